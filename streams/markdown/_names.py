"""Agent names as phase plans write them: ids from ``backend-gateway-expert``,
``Security Scanner`` or ``Infrastructure Agent 1``; lists of them (never a head count such as
``5 (Backend x 2, ...)``); ``agent: task`` lines and team list items."""

from __future__ import annotations

import re

from streams.markdown._draft import StreamDraft
from streams.markdown._text import ascii_words, slugify, strip_emphasis

__all__ = [
    "AGENT_LINE",
    "add_team",
    "agent_list",
    "agent_name",
    "member_item",
    "raw_agent",
    "slug_label",
]

_KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)+$")
_HEAD_COUNT = re.compile(r"^\s*\d+\b|\b[x\u00d7]\s*\d+\b|\b\d+\s*[x\u00d7]\b", re.IGNORECASE)
_ROLE_WORDS = {
    "agent", "expert", "specialist", "engineer", "developer", "architect", "analyst",
    "validator", "auditor", "reviewer", "tester", "writer", "designer", "profiler",
    "orchestrator", "manager", "lead", "scanner", "generator", "integrator", "pro",
    "detector", "debugger", "synchronizer", "creator", "automator", "coordinator",
    "analyzer", "monitor", "optimizer", "planner", "researcher", "builder", "master",
    "guru", "wizard", "bot", "operator", "admin", "administrator", "consultant",
}  # fmt: skip


def agent_name(text: str, known: set[str]) -> str | None:
    """The agent id ``text`` names (``backend-gateway-expert``, ``Security Scanner``,
    ``Infrastructure Agent 1``), or None when it does not look like an agent's name."""
    word = strip_emphasis(text).strip(" `'\"")
    word = re.sub(r"\s*[(\[].*?[)\]]\s*", " ", word).strip()
    slug = slugify(word)
    if not slug or len(slug) > 64:
        return None
    if slug in known or _KEBAB.match(word):
        return slug
    words = ascii_words(word)
    if 1 <= len(words) <= 5 and (
        words[-1] in _ROLE_WORDS
        or (len(words) > 1 and words[-2] in _ROLE_WORDS and words[-1].isdigit())
    ):
        return slug
    return None


def agent_list(text: str) -> list[str]:
    """The agents of ``a, b and c (x3)``; empty for a head count such as ``5 (Backend x 2)``."""
    if _HEAD_COUNT.search(text) and not _KEBAB.search(text.split(",")[0].strip(" `*")):
        return []
    names: list[str] = []
    for part in re.split(r",|;|\s+and\s+|&|\u2192|->", re.sub(r"[(\[].*?[)\]]", "", text)):
        name = agent_name(part, set())
        if name is None:
            slug = slugify(part)
            name = slug if slug and len(ascii_words(part)) <= 4 else None
        if name and name not in names:
            names.append(name)
    return names


def add_team(draft: StreamDraft, names: list[str], line: int) -> None:
    for name in names:
        if name not in draft.team:
            draft.team.append(name)
    if names and not draft.team_line:
        draft.team_line = line


# ``- backend-gateway-expert: task``, ``- `x-y`: task``, ``- **x-y** → task``
AGENT_LINE = re.compile(
    r"^\s*(?:[-*+]\s+|\d{1,3}[.)]\s+)?(?:\*\*|__|`)?(?P<name>[A-Za-z][\w .-]{1,60}?)"
    r"(?:\*\*|__|`)?\s*(?::|\u2192|->|=>)\s*(?:\*\*|__)?\s*(?P<task>\S.*)$"
)


def slug_label(text: str) -> str:
    return " ".join(ascii_words(text))


_NAME_PART = re.compile(r"^\s*(?:[-*+]\s+|\d{1,3}[.)]\s+)?(?:\*\*|__|`)?(.+?)(?:\*\*|__|`)?\s*:")


def raw_agent(text: str, known: set[str]) -> str | None:
    """The agent an ``agent: task`` line starts with, as written (``- **x-y**: task``)."""
    match = _NAME_PART.match(text)
    return agent_name(match.group(1), known) if match else None


def member_item(text: str, known: set[str]) -> tuple[str, bool, str]:
    """``**Infrastructure Agent 1** - "OpenAPI Architect" (Lead)`` -> (id, lead, role)."""
    lead = bool(re.search(r"[(\[]\s*(?:co-?\s*)?lead\s*[)\]]", text, re.I))
    role_match = re.search(r"[\"\u201c]([^\"\u201d]+)[\"\u201d]", text)
    head = re.split(r"\s+[-\u2013\u2014:]\s+|\s*[(\[\"\u201c]", text, maxsplit=1)[0]
    name = agent_name(head, known) or (slugify(head) if len(ascii_words(head)) <= 4 else "")
    return name, lead, role_match.group(1).strip() if role_match else ""
