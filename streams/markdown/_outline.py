"""A Markdown document as a tree of headings, and the shapes that name a stream in it.

The seed's reader (:mod:`streams.markdown._document`) classifies sections by their titles; the
other families of phase plans (see :mod:`streams.markdown._generic`) need the nesting instead: a
``## Phase 1: Scaffold`` owns its ``#### Task 1.1`` sub-headings, and a ``### Stream 2: X``
owns its team and deliverables. Line numbers are the user's file's; text is repaired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streams.markdown._document import Line
from streams.markdown._text import ascii_words, clean_title, repair_mojibake, split_lines
from streams.markdown._values import timeline

__all__ = [
    "Block",
    "StreamHeading",
    "estimate",
    "outline",
    "priority_of",
    "stream_block_line",
    "stream_heading",
    "table_rows",
]

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


@dataclass(slots=True)
class Block:
    """A heading (``level`` 0: the whole document) with its own lines and sub-headings."""

    line: int
    level: int
    title: str
    lines: list[Line] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)

    def walk(self) -> list[Block]:
        """This block and every block under it, in file order."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def all_lines(self) -> list[Line]:
        """Every line of the subtree (sub-headings as ``Title:`` lines), in file order."""
        out = list(self.lines)
        for child in self.children:
            out.append(Line(child.line, f"{child.title}:", heading=True))
            out.extend(child.all_lines())
        return sorted(out, key=lambda line: line.number)


def outline(text: str) -> tuple[Block, tuple[int, ...]]:
    """The heading tree of ``text`` and the lines whose mojibake was repaired."""
    root = Block(0, 0, "")
    stack = [root]
    repaired: list[int] = []
    fence = ""
    for number, original in enumerate(split_lines(text), 1):
        line = repair_mojibake(original)
        if line != original:
            repaired.append(number)
        if fence:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = ""
                stack[-1].lines.append(Line(number, "", fenced=True))
            else:
                stack[-1].lines.append(Line(number, line, fenced=True))
            continue
        if (match := _FENCE.match(line)) is not None:
            fence = match.group(1)
            stack[-1].lines.append(Line(number, "", fenced=True))
            continue
        if (match := _HEADING.match(line)) is None:
            stack[-1].lines.append(Line(number, line))
            continue
        level = len(match.group(1))
        while stack[-1].level >= level:
            stack.pop()
        block = Block(number, level, clean_title(match.group(2)))
        stack[-1].children.append(block)
        stack.append(block)
    return root, tuple(repaired)


_PRIORITY_WORDS = {
    "critical": "critical",
    "urgent": "critical",
    "blocker": "critical",
    "highest": "critical",
    "high": "high",
    "important": "high",
    "medium": "medium",
    "normal": "medium",
    "moderate": "medium",
    "low": "low",
    "lowest": "low",
    "minor": "low",
}
_LEVELS = ("critical", "high", "medium", "low")
# (P0) (CRITICAL) (Priority: High) [P1] (Priority 1) (HIGH PRIORITY) - HIGH PRIORITY
_PRIORITY = re.compile(
    r"(?:[(\[]\s*(?P<inner>[^()\[\]]{1,30}?)\s*[)\]]"
    r"|[-\u2013\u2014:|]\s*(?P<dash>(?:[a-z]+\s+priority|priority\s*:?\s*\w+|p\d)))\s*",
    re.IGNORECASE,
)


def priority_of(text: str) -> str | None:
    """``P0``/``critical`` -> critical, ``P1``/``high`` -> high, ``P2``/``medium`` ->
    medium, ``P3`` and up/``low`` -> low; ``Priority N`` reads as ``PN``. None: no priority."""
    words = ascii_words(text)
    if "priority" not in words and not (
        len(words) == 1 and (words[0] in _PRIORITY_WORDS or re.fullmatch(r"p\d", words[0]))
    ):
        return None
    for word in words:
        if re.fullmatch(r"p\d", word):
            return _LEVELS[min(int(word[1]), 3)]
        if word in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[word]
    if "priority" in words:
        after = words[words.index("priority") + 1 :]
        if after and after[0].isdigit():
            return _LEVELS[min(int(after[0]), 3)]
    return None


@dataclass(frozen=True, slots=True)
class StreamHeading:
    """What a stream's heading (or block line) says: kind (``stream``, ``phase``...),
    number, name, priority, the text of a duration in it, and the leftover words."""

    kind: str
    number: str
    name: str
    priority: str | None
    duration: str


_NUMBERED = re.compile(
    r"^(?P<kind>(?:work\s*)?stream|track|phase|epic|milestone|stage|wave)\s*#?\s*"
    r"(?P<number>[0-9]{1,3}(?:\.[0-9]{1,2})?|[A-Z])\s*(?:[:.)\-\u2013\u2014]\s*(?P<name>.*)|\s+(?P<paren>[(\[].*))?$",
    re.IGNORECASE,
)
_NAMED = re.compile(
    r"^(?P<name>[A-Za-z0-9][\w&/+.' -]{0,60}?)\s+(?:work)?stream\b\s*(?P<rest>.*)$", re.I
)
_DURATION = re.compile(
    r"[(\[]\s*(?P<d>(?:(?:~\s*)?\d[\d.]*\s*(?:-|\u2013|to)?\s*\d*[\d.]*\s*"
    r"(?:minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|wks?)\b|weeks?\s*\d)[^)\]]*)[)\]]",
    re.IGNORECASE,
)
_WEEKS = re.compile(
    r"\bweeks?\s*(\d{1,2})(?:\s*(?:-|\u2013|to|through)\s*(?:weeks?\s*)?(\d{1,2}))?\b"
    r"|\b(\d{1,2}(?:\.\d)?)(?:\s*(?:-|\u2013|to)\s*(\d{1,2}(?:\.\d)?))?\s*(?:weeks?|wks?)\b",
    re.IGNORECASE,
)


def estimate(text: str) -> tuple[str, str] | None:
    """A timeline from an estimate: ``2 hours`` -> ``2h``, ``8-12 hours`` -> ``8h..12h``,
    ``30 minutes`` -> ``30m``, ``Estimate: 3h`` -> ``3h``, ``Week 1-2`` (two calendar weeks)
    -> ``14d``, ``6 weeks`` -> ``42d``, ``2-3 weeks`` -> ``14d..21d``; with the words left
    over. None when the text holds no duration."""
    match = _WEEKS.search(text)
    if match is not None:
        rest = " ".join((text[: match.start()] + " " + text[match.end() :]).split())
        rest = rest.strip(" -\u2013\u2014:,()")
        if match.group(1):  # Week 1-2: a span of calendar weeks
            first = int(match.group(1))
            last = int(match.group(2) or first)
            if last < first:
                return None
            return f"{(last - first + 1) * 7}d", f"{match.group(0)} {rest}".strip()
        low = float(match.group(3))
        high = float(match.group(4)) if match.group(4) else None
        if low <= 0 or (high is not None and high < low):
            return None
        days = f"{low * 7:g}d"
        return (f"{days}..{high * 7:g}d" if high else days), rest
    return timeline(text)


_NOT_A_STREAM = re.compile(
    r"\b(deliverables?|exit|criteria|summary|overview|complete|completed|checklist|status|"
    r"risks?|metrics?|evidence|timeline|dependencies|retrospective|notes?)\b",
    re.IGNORECASE,
)


def _split(title: str) -> tuple[str, str | None, str]:
    """``NAME (2 hours) [P1]`` -> (``NAME``, ``high``, ``2 hours``)."""
    duration = ""
    if (match := _DURATION.search(title)) is not None:
        duration = match.group("d")
        title = title[: match.start()] + title[match.end() :]
    priority = None
    for match in list(_PRIORITY.finditer(title)):
        part = match.group("inner") or match.group("dash") or ""
        found = priority_of(part)
        if found is not None:
            priority = priority or found
            title = title[: match.start()] + " " + title[match.end() :]
    name = " ".join(title.split()).strip(" -:\u2013\u2014")
    # Trailing emoji and symbols (``Frontend & Security 🎨🔒``) are decoration.
    while name and not (name[-1].isalnum() or name[-1] in ")]"):
        name = name[:-1].rstrip()
    return name, priority, duration


def stream_heading(title: str) -> StreamHeading | None:
    """The stream a heading names: ``Stream 2: NAME``, ``Phase 1: NAME (2 hours)``,
    ``NAME Stream (Priority 1)``, ``Workstream A - NAME [P0]``; None for other headings."""
    match = _NUMBERED.match(title)
    if match is not None:
        rest = match.group("name") or match.group("paren") or ""
        if _NOT_A_STREAM.search(rest) and len(ascii_words(rest)) <= 3:
            return None
        name, priority, duration = _split(rest)
        kind = "stream" if "stream" in match.group("kind").lower() else match.group("kind")
        return StreamHeading(kind.lower(), match.group("number"), name, priority, duration)
    match = _NAMED.match(title)
    if match is not None and not _NOT_A_STREAM.search(match.group("name")):
        rest = match.group("rest")
        if rest and not rest.startswith(("(", "[", "-", ":", "\u2013", "\u2014")):
            return None  # "Stream processing design": prose, not a stream's name
        name, priority, duration = _split(match.group("name") + " " + rest)
        return StreamHeading("stream", "", name, priority, duration)
    return None


_BLOCK_LINE = re.compile(
    r"^\s*(?:[-*+]\s+)?(?:\*\*|__)?(?P<title>[A-Za-z0-9][^:*]{0,80}?\bstream\b[^:*]{0,40}?)"
    r"(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*$",
    re.IGNORECASE,
)


def stream_block_line(text: str) -> StreamHeading | None:
    """A line that opens a stream block: ``Backend Stream (Priority 1):`` (in prose or a
    YAML block), its members on the lines after it."""
    match = _BLOCK_LINE.match(text)
    if match is None:
        return None
    return stream_heading(match.group("title").strip())


_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def _cells(text: str) -> list[str]:
    inner = text.strip()
    inner = inner.removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in inner.split("|")]


def table_rows(lines: list[Line]) -> list[tuple[list[str], list[tuple[Line, list[str]]]]]:
    """The Markdown tables among ``lines``: each as (header cells, [(line, cells)...])."""
    tables: list[tuple[list[str], list[tuple[Line, list[str]]]]] = []
    i = 0
    while i + 1 < len(lines):
        head, rule = lines[i], lines[i + 1]
        if (
            not head.fenced
            and head.text.lstrip().startswith("|")
            and _TABLE_RULE.match(rule.text)
            and rule.number == head.number + 1
        ):
            header = [" ".join(ascii_words(c)) for c in _cells(head.text)]
            rows: list[tuple[Line, list[str]]] = []
            j = i + 2
            while j < len(lines) and lines[j].text.lstrip().startswith("|"):
                rows.append((lines[j], _cells(lines[j].text)))
                j += 1
            tables.append((header, rows))
            i = j
        else:
            i += 1
    return tables
