"""Claude Code agent definitions (``.claude/agents/NAME.md``) read into plan agent facts.

A definition is a Markdown file that starts with YAML front matter between ``---`` lines::

    ---
    name: Security Scanner
    description: Security vulnerability detection and mitigation guidance
    tools: [Read, Glob, Grep]          # or: tools: Read, Glob, Grep
    model: haiku-4.5
    ---
    (the agent's instructions, in Markdown)

:func:`read_definition` parses one file and :func:`read_definitions` a folder of them. The
plan id of an agent is the slug of its ``name`` (``Security Scanner`` ->
``security-scanner``); the display name is kept. Problems (no front matter, bad YAML, no
``name``, two files defining one id) are returned as :class:`DefinitionProblem` values, never
raised, so that one broken file does not hide the others. The Markdown import uses these
today; a plan-level ``agents_from:`` can reuse the same functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from streams.markdown._text import slugify

__all__ = [
    "AgentDefinition",
    "DefinitionProblem",
    "agent_id",
    "parse_definition",
    "read_definition",
    "read_definitions",
]

# Definitions larger than this are not agent definitions (the corpus' largest is ~20 kB).
_MAX_BYTES = 1 << 20
_FRONT = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)^---[ \t]*\r?$\n?", re.DOTALL | re.MULTILINE)


class _FrontMatter(BaseModel):
    """The front matter keys the orchestrator uses; others (``timeout``, ``color``) are kept
    out of the plan."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    tools: list[str] = Field(default_factory=list)
    model: str | None = None

    @field_validator("name", "description", "model", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return str(value).strip() if isinstance(value, int | float) else value

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: object) -> object:
        if value is None:
            return []
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        if isinstance(value, list):
            return [str(t).strip() for t in value if str(t).strip()]
        return value


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    """One agent: plan ``id``, display ``name``, ``description``, ``tools``, ``model``, the
    instructions after the front matter and the file it came from."""

    id: str
    name: str
    description: str
    tools: tuple[str, ...]
    model: str | None
    instructions: str
    path: str


@dataclass(frozen=True, slots=True)
class DefinitionProblem:
    """Why ``path`` gave no agent, and how to fix it."""

    path: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} (fix: {self.fix})"


def agent_id(name: str) -> str:
    """The plan id of an agent named ``name``: ``Security Scanner`` -> ``security-scanner``
    (empty when the name has no letters or digits)."""
    return slugify(name)


def parse_definition(text: str, path: str) -> AgentDefinition | DefinitionProblem:
    """The agent that the definition ``text`` (from ``path``) describes, or why none."""
    match = _FRONT.match(text)
    if match is None:
        return DefinitionProblem(
            path,
            "no YAML front matter",
            "start the file with '---', a line 'name: AGENT', and '---'",
        )
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        return DefinitionProblem(
            path, f"front matter is not valid YAML{where}", "fix the YAML between the '---' lines"
        )
    if not isinstance(data, dict):
        return DefinitionProblem(
            path, "front matter is not a mapping", "write 'name: AGENT' between the '---' lines"
        )
    try:
        front = _FrontMatter.model_validate(data)
    except ValidationError as exc:
        keys = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
        return DefinitionProblem(
            path,
            f"front matter key(s) {', '.join(keys) or '?'} missing or of the wrong type",
            "give 'name' (text), optional 'description' and 'model' (text), "
            "'tools' (a comma list or a YAML list)",
        )
    ident = agent_id(front.name)
    if not ident:
        return DefinitionProblem(
            path, f"name {front.name!r} has no letters or digits", "give the agent a name"
        )
    return AgentDefinition(
        ident,
        " ".join(front.name.split()),
        " ".join(front.description.split()),
        tuple(front.tools),
        front.model,
        text[match.end() :].strip(),
        path,
    )


def read_definition(path: Path) -> AgentDefinition | DefinitionProblem:
    """Read the definition file ``path`` (UTF-8; never raises for a bad file)."""
    try:
        data = path.read_bytes()[: _MAX_BYTES + 1]
    except OSError as exc:
        return DefinitionProblem(str(path), f"cannot read: {exc.strerror}", "check the path")
    if len(data) > _MAX_BYTES:
        return DefinitionProblem(str(path), "larger than 1 MiB", "is this an agent definition?")
    return parse_definition(data.decode("utf-8", "replace"), str(path))


def read_definitions(
    folder: Path,
) -> tuple[dict[str, AgentDefinition], list[DefinitionProblem]]:
    """Every ``*.md`` definition in ``folder`` by plan id (file-name order), and the
    problems of the files that gave none; a missing folder gives nothing."""
    found: dict[str, AgentDefinition] = {}
    problems: list[DefinitionProblem] = []
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.glob("*.md")):
        result = read_definition(path)
        if isinstance(result, DefinitionProblem):
            problems.append(result)
        elif result.id in found:
            problems.append(
                DefinitionProblem(
                    str(path),
                    f"defines {result.id!r} again (first in {found[result.id].path})",
                    "rename one of the agents",
                )
            )
        else:
            found[result.id] = result
    return found, problems
