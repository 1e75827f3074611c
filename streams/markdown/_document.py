"""A Markdown phase plan cut into sections, each classified by what its heading says.

Headings are matched by keywords rather than exact titles, so renamed sections ("Focus Areas",
"FOCUS AREA STRATEGIC PLANS") and moved ones map the same way. A sub-heading that says
nothing known continues its parent's section (``#### Implementation Sequence`` inside a
focus area reads as the label ``Implementation Sequence:``); under a section that is not
mapped it shares that section's reason.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from streams.markdown._text import ascii_words, clean_title, repair_mojibake, split_lines

__all__ = ["CONTENT_KINDS", "Document", "FocusHeading", "Kind", "Line", "Section", "parse"]


class Kind(enum.Enum):
    PREAMBLE = "text before the first heading"
    TITLE = "document title"
    SUMMARY = "executive summary"
    DECISION_TABLE = "decision matrix"
    FOCUS_CONTAINER = "focus areas"
    FOCUS_AREA = "focus area"
    ARCHITECTURE = "parallel execution architecture"
    RESOURCES = "resource allocation matrix"
    CONFLICT = "conflict prevention"
    ROLLBACK = "rollback procedures"
    CRITERIA = "quantitative success criteria"
    EVIDENCE = "mandatory evidence"
    IGNORED = "not part of a plan"
    UNKNOWN = "not recognised"


# Kinds whose sub-headings continue them rather than start a section of their own.
CONTENT_KINDS = frozenset(
    {
        Kind.SUMMARY,
        Kind.DECISION_TABLE,
        Kind.FOCUS_AREA,
        Kind.ARCHITECTURE,
        Kind.RESOURCES,
        Kind.CONFLICT,
        Kind.ROLLBACK,
        Kind.CRITERIA,
        Kind.EVIDENCE,
    }
)

# First match wins, so the specific ("rollback", "evidence") go before the general.
_RULES: tuple[tuple[Kind, tuple[str, ...]], ...] = (
    (Kind.ROLLBACK, ("rollback", "recovery procedure")),
    (Kind.EVIDENCE, ("evidence",)),
    (Kind.RESOURCES, ("resource allocation", "resource matrix", "allocation matrix", "concurren")),
    (
        Kind.ARCHITECTURE,
        ("parallel execution", "execution architecture", "stream architecture", "execution stream"),
    ),
    (
        Kind.CRITERIA,
        ("success criteri", "quantitative", "success metric", "validation gate", "acceptance"),
    ),
    (Kind.DECISION_TABLE, ("decision matrix", "decision table")),
    (Kind.CONFLICT, ("conflict", "resource locking")),
    (Kind.SUMMARY, ("executive summary", "overview")),
    (Kind.FOCUS_CONTAINER, ("focus area",)),
)

_IGNORED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("historical",), "historical patterns: the success probabilities already carry them"),
    (
        ("context package", "package"),
        "the orchestrator builds each agent's context package from the plan itself",
    ),
    (("synthesis",), "synthesis preparation: not part of a plan"),
    (("checklist", "readiness", "pre execution"), "a checklist for people: no plan field"),
    (("authorization", "status"), "status prose: no plan field"),
    (
        ("risk", "contingency", "mitigation"),
        "plan-wide risk prose: each stream's risk comes from its focus area",
    ),
)


@dataclass(frozen=True, slots=True)
class Line:
    """One source line: its 1-based ``number``, repaired ``text``, and whether it sat inside
    a fenced block. An absorbed sub-heading appears as ``Title:`` with ``heading`` set."""

    number: int
    text: str
    fenced: bool = False
    heading: bool = False


@dataclass(frozen=True, slots=True)
class FocusHeading:
    """``### 2. GPU OPTIMIZATION (HIGH PRIORITY)``: number 2, name, priority word ``high``
    (empty when the heading gives none)."""

    number: int | None
    name: str
    priority: str


@dataclass(frozen=True, slots=True)
class Section:
    """A heading and the lines it owns; ``reason`` says why an IGNORED section is left out."""

    kind: Kind
    title: str
    level: int
    line: int
    lines: tuple[Line, ...]
    reason: str = ""
    focus: FocusHeading | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """The parsed file: sections in file order, the lines whose mojibake was repaired, and
    the line of a code fence never closed (0: none)."""

    sections: tuple[Section, ...]
    repaired: tuple[int, ...]
    unclosed_fence: int
    line_count: int


_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_FOCUS = re.compile(
    r"^(?:(\d{1,3})[.)]\s*)?(.+?)\s*[(\[]\s*([A-Za-z]+)[\s-]+priority\s*[)\]]\s*$", re.IGNORECASE
)
_NUMBERED = re.compile(r"^(\d{1,3})[.)]\s+(.+?)\s*$")


def _words(title: str) -> str:
    return " " + " ".join(ascii_words(title))


def _classify(title: str, level: int, first_title: bool) -> tuple[Kind, str]:
    if first_title and level == 1:
        return Kind.TITLE, ""
    words = _words(title)
    for kind, keys in _RULES:
        if any(" " + key in words for key in keys):
            return kind, ""
    for keys, reason in _IGNORED:
        if any(" " + key in words for key in keys):
            return Kind.IGNORED, reason
    return Kind.UNKNOWN, ""


@dataclass(slots=True)
class _Open:
    """A section being filled (mutable while the lines are read)."""

    kind: Kind
    title: str
    level: int
    line: int
    reason: str = ""
    focus: FocusHeading | None = None
    lines: list[Line] = field(default_factory=list)

    def freeze(self) -> Section:
        return Section(
            self.kind, self.title, self.level, self.line, tuple(self.lines), self.reason, self.focus
        )


def _focus_heading(title: str, under_container: bool) -> FocusHeading | None:
    match = _FOCUS.match(title)
    if match is not None:
        number = int(match.group(1)) if match.group(1) else None
        return FocusHeading(number, match.group(2).strip(" -:"), match.group(3).lower())
    match = _NUMBERED.match(title)
    if match is not None and under_container:
        return FocusHeading(int(match.group(1)), match.group(2).strip(" -:"), "")
    return None


def parse(text: str) -> Document:
    """Split ``text`` into sections; every line keeps its number in the file."""
    raw = split_lines(text)
    repaired: list[int] = []
    opened: list[_Open] = [_Open(Kind.PREAMBLE, "", 0, 0)]
    target = opened[0]
    # The headings enclosing the current line: (level, kind, reason, section they fill).
    stack: list[tuple[int, Kind, str, _Open]] = []
    fence, fence_line = "", 0
    seen_title = False
    for number, original in enumerate(raw, 1):
        line = repair_mojibake(original)
        if line != original:
            repaired.append(number)
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
            else:
                target.lines.append(Line(number, line, fenced=True))
            continue
        if (match := _FENCE.match(line)) is not None:
            fence, fence_line = match.group(1), number
            continue
        if (match := _HEADING.match(line)) is None:
            target.lines.append(Line(number, line))
            continue
        level, title = len(match.group(1)), clean_title(match.group(2))
        while stack and stack[-1][0] >= level:
            stack.pop()
        kind, reason = _classify(title, level, not seen_title)
        seen_title = True
        in_container = any(k is Kind.FOCUS_CONTAINER for _, k, _, _ in stack)
        focus = _focus_heading(title, in_container) if kind is not Kind.TITLE else None
        if focus is not None:
            kind, reason = Kind.FOCUS_AREA, ""
        parent = next((entry for entry in reversed(stack) if entry[1] is not Kind.UNKNOWN), None)
        if kind is Kind.UNKNOWN and parent is not None and parent[1] in CONTENT_KINDS:
            target = parent[3]
            target.lines.append(Line(number, f"{title}:", heading=True))
            stack.append((level, parent[1], "", target))
            continue
        if kind is Kind.UNKNOWN and parent is not None and parent[1] is Kind.IGNORED:
            kind, reason = Kind.IGNORED, parent[2]
        target = _Open(kind, title, level, number, reason, focus)
        opened.append(target)
        stack.append((level, kind, reason, target))
    return Document(
        tuple(s.freeze() for s in opened),
        tuple(repaired),
        fence_line if fence else 0,
        len(raw),
    )
