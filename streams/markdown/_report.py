"""What a Markdown import mapped, could not map and assumed, each at its lines in the source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.markdown._text import shorten

__all__ = ["ImportReport", "Ledger", "ReportItem"]


@dataclass(frozen=True, slots=True)
class ReportItem:
    """One thing the import did or could not do.

    ``line``..``end_line`` are 1-based lines of the Markdown file (0: the document as a
    whole); ``section`` is the heading they sit under, ``text`` the source text (repaired,
    shortened) and ``detail`` where it went (mapped), why not (unmapped) or what was
    assumed.
    """

    line: int
    end_line: int
    section: str
    text: str
    detail: str

    def where(self) -> str:
        """``12``, ``12-20``, or ``-`` for the whole document."""
        if not self.line:
            return "-"
        return str(self.line) if self.end_line <= self.line else f"{self.line}-{self.end_line}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "end_line": self.end_line,
            "section": self.section,
            "text": self.text,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    """The outcome of importing ``source``: every item ordered by line."""

    source: str
    mapped: tuple[ReportItem, ...]
    unmapped: tuple[ReportItem, ...]
    assumptions: tuple[ReportItem, ...]
    repaired_lines: tuple[int, ...] = ()

    def render(self) -> str:
        """The report for people (the CLI prints it on stderr): what was repaired, not
        mapped and assumed, one item a line as ``SOURCE:LINE: text: detail``."""
        out: list[str] = []
        if self.repaired_lines:
            shown = ", ".join(str(n) for n in self.repaired_lines[:12])
            more = ", ..." if len(self.repaired_lines) > 12 else ""
            out.append(
                f"{self.source}: repaired mis-encoded characters (UTF-8 read as cp1252) on "
                f"{len(self.repaired_lines)} lines: {shown}{more}"
            )
        for head, items in (("not mapped", self.unmapped), ("assumed", self.assumptions)):
            if items:
                out.append(f"{head} ({len(items)}):")
                out.extend(f"  {self._line(item)}" for item in items)
        return "\n".join(out)

    def _line(self, item: ReportItem) -> str:
        where = f"{self.source}:{item.where()}" if item.line else self.source
        text = f" {item.text!r}:" if item.text else ""
        section = f" [{item.section}]" if item.section else ""
        return f"{where}:{section}{text} {item.detail}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form of the report (``orchestrator import --json``)."""
        return {
            "source": self.source,
            "repaired_lines": list(self.repaired_lines),
            "mapped": [i.as_dict() for i in self.mapped],
            "unmapped": [i.as_dict() for i in self.unmapped],
            "assumptions": [i.as_dict() for i in self.assumptions],
        }


@dataclass(slots=True)
class Ledger:
    """Collects report items while the sections are mapped (mutable: each section's mapper
    adds to it in turn), and which lines some mapper accounted for, so that the lines
    nobody used can be reported at the end."""

    mapped: list[ReportItem] = field(default_factory=list)
    unmapped: list[ReportItem] = field(default_factory=list)
    assumed: list[ReportItem] = field(default_factory=list)
    used: set[int] = field(default_factory=set)

    def map(self, line: int, section: str, text: str, target: str) -> None:
        """Line ``line`` went to ``target`` (e.g. ``streams[redis].risk``)."""
        self.used.add(line)
        self.mapped.append(ReportItem(line, line, section, shorten(text), target))

    def skip(self, line: int, section: str, text: str, reason: str, *, end_line: int = 0) -> None:
        """Line(s) ``line``..``end_line`` could not be mapped, for ``reason``."""
        self.used.update(range(line, max(line, end_line) + 1))
        self.unmapped.append(ReportItem(line, max(line, end_line), section, shorten(text), reason))

    def assume(self, line: int, section: str, text: str, what: str) -> None:
        """Something was decided that the source did not say, at ``line`` (0: anywhere)."""
        self.assumed.append(ReportItem(line, line, section, shorten(text), what))

    def use(self, *lines: int) -> None:
        """These lines are accounted for (a cross-check that agreed, a structural line)."""
        self.used.update(lines)

    def report(self, source: str, repaired: tuple[int, ...]) -> ImportReport:
        def order(items: list[ReportItem]) -> tuple[ReportItem, ...]:
            return tuple(sorted(items, key=lambda i: (i.line, i.end_line)))

        return ImportReport(
            source, order(self.mapped), order(self.unmapped), order(self.assumed), repaired
        )
