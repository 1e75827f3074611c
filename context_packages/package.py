"""An agent's context package as built: Markdown, exact size, sections kept and cut, hash.

The Markdown looks like the packages users write by hand::

    # Context Package - <agent>
    **Target**: <agent> (<role>)
    **Plan**: <plan id> (<plan title>)
    **Token Limit**: N tokens | **Package Size**: M tokens | **Tokenizer**: cl100k_base
    **Cut to fit**: Plan Overview, Team            (only when something was cut)

    ## <section>
    ...

``M`` is the exact token count of the whole Markdown, this line included (a fixed point:
the number is rendered, the text recounted, until the two agree). ``sha256`` is the hex
SHA-256 of the Markdown's UTF-8 bytes. The JSON form (:class:`PackageDocument`) is the
boundary model for storing a package with its run and reading it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from context_packages.errors import ContextPackageError
from context_packages.sections import PackageHeader, Section
from context_packages.tokenizer import Tokenizer

__all__ = [
    "AgentPackage",
    "CutEntry",
    "CutSection",
    "PackageDocument",
    "SectionEntry",
    "SectionSize",
    "render_markdown",
    "sha256_of",
]

_MAX_SIZE_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class SectionSize:
    """A section kept in the package; ``tokens`` counts its Markdown on its own."""

    title: str
    tokens: int
    priority: int
    required: bool


@dataclass(frozen=True, slots=True)
class CutSection:
    """A section left out to fit the limit, and why."""

    title: str
    tokens: int
    priority: int
    reason: str


class SectionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    tokens: int = Field(ge=0, description="Tokens of this section's Markdown on its own.")
    priority: int = Field(description="Cut order: lower is cut first; 8 is never cut.")
    required: bool


class CutEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    tokens: int = Field(ge=0)
    priority: int
    reason: str


class PackageDocument(BaseModel):
    """A context package as JSON: what ``orchestrator package --json`` prints and a run
    stores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: str
    token_limit: int = Field(ge=1)
    tokens: int = Field(ge=0, description="Exact size of `markdown` for `tokenizer`.")
    tokenizer: str
    sections: list[SectionEntry] = Field(description="Sections kept, in reading order.")
    cut: list[CutEntry] = Field(description="Sections left out, in the order they were cut.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    markdown: str


@dataclass(frozen=True, slots=True)
class AgentPackage:
    """The fitted package of one agent: ``tokens <= token_limit`` always holds."""

    agent: str
    token_limit: int
    tokens: int
    tokenizer: str
    sections: tuple[SectionSize, ...]
    cut: tuple[CutSection, ...]
    markdown: str
    sha256: str

    def to_document(self) -> PackageDocument:
        return PackageDocument(
            agent=self.agent,
            token_limit=self.token_limit,
            tokens=self.tokens,
            tokenizer=self.tokenizer,
            sections=[
                SectionEntry(
                    title=s.title, tokens=s.tokens, priority=s.priority, required=s.required
                )
                for s in self.sections
            ],
            cut=[
                CutEntry(title=c.title, tokens=c.tokens, priority=c.priority, reason=c.reason)
                for c in self.cut
            ],
            sha256=self.sha256,
            markdown=self.markdown,
        )

    def to_json(self) -> str:
        """The package as indented JSON (fields in :class:`PackageDocument` order)."""
        return self.to_document().model_dump_json(indent=2)


def _compose(
    header: PackageHeader,
    kept: Sequence[Section],
    cut_titles: Sequence[str],
    limit: int,
    size: int,
    tokenizer: str,
) -> str:
    target = f"{header.agent} ({header.role})" if header.role else header.agent
    plan = f"{header.plan} ({header.plan_title})" if header.plan_title else header.plan
    lines = [
        f"# Context Package - {header.agent}",
        f"**Target**: {' '.join(target.split())}",
        f"**Plan**: {' '.join(plan.split())}",
        f"**Token Limit**: {limit} tokens | **Package Size**: {size} tokens | "
        f"**Tokenizer**: {tokenizer}",
    ]
    if cut_titles:
        lines.append(f"**Cut to fit**: {', '.join(cut_titles)}")
    return "\n\n".join(["\n".join(lines), *(s.markdown() for s in kept)]) + "\n"


def render_markdown(
    header: PackageHeader,
    kept: Sequence[Section],
    cut_titles: Sequence[str],
    limit: int,
    tokenizer: Tokenizer,
) -> tuple[str, int]:
    """The package Markdown with ``kept`` sections, and its exact size in tokens.

    The header states the size of the text it is part of: the size is rendered and the text
    recounted until the two agree (two or three rounds for BPE tokenizers, whose count
    never falls as the number gains digits). Raises ContextPackageError for a tokenizer
    with which they never agree.
    """
    size = 0
    seen: set[int] = set()
    for _ in range(_MAX_SIZE_ROUNDS):
        text = _compose(header, kept, cut_titles, limit, size, tokenizer.name)
        count = tokenizer.count(text)
        if count == size:
            return text, count
        if count in seen:
            break
        seen.add(size)
        size = count
    raise ContextPackageError(
        f"tokenizer {tokenizer.name!r} gives the package of agent {header.agent!r} no stable "
        "size (the count changes with the number that states it); use another tokenizer"
    )


def sha256_of(markdown: str) -> str:
    """The hex SHA-256 of ``markdown``'s UTF-8 bytes: a package's content hash."""
    return hashlib.sha256(markdown.encode("utf-8")).hexdigest()
