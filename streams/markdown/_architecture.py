"""The parallel execution architecture and the strategic decision matrix.

``STREAM 2 - PERFORMANCE OPTIMIZATION (GPU + Database)`` blocks give their focus areas a
``group`` (``stream-2-performance-optimization``) and a gate threshold (``Success Gate: 80%+
confidence threshold`` -> 0.8); ``Dependencies: After Stream 1`` makes them wait for that
block's streams. The blocks' teams and timelines, and the decision matrix's rows, repeat what
the focus areas say: they are checked against it (a difference is reported, the focus area
wins) and fill in what a focus area left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.markdown._document import Line, Section
from streams.markdown._draft import Sourced, StreamDraft
from streams.markdown._focus import match_stream
from streams.markdown._report import Ledger
from streams.markdown._text import ascii_words, slugify, split_label, strip_emphasis
from streams.markdown._values import agent_names, percent, risk, timeline

__all__ = ["architecture", "decision_table"]

_HEADER = re.compile(
    r"^\s*(?:[-*+]\s+)?stream\s+(\d{1,3})\b\s*[-\u2013\u2014:.]?\s*(.*?)\s*:?\s*$", re.I
)
_TREE = re.compile(r"^[\s│├└─┬┴┼┤┌┐┘┃┣┗━|`'+*>-]+")
_WAITS = re.compile(r"\b(after|depends?\s+on|requires?|following|once|blocked\s+by|waits?\s+for)\b")
_PARALLEL = re.compile(r"\b(parallel|independent|independently|concurrent|none)\b")


@dataclass(slots=True)
class _Block:
    """One ``STREAM N`` block while it is read (mutable: its lines follow its header)."""

    number: int
    name: str
    members_text: str
    line: Line
    labels: list[tuple[str, str, Line]] = field(default_factory=list)
    members: list[StreamDraft] = field(default_factory=list)
    waits_for: list[tuple[int, Line]] = field(default_factory=list)


def _blocks(section: Section) -> list[_Block]:
    blocks: list[_Block] = []
    for line in section.lines:
        text = strip_emphasis(line.text)
        if (match := _HEADER.match(text)) is not None:
            rest = match.group(2)
            members = re.search(r"\(([^()]*)\)\s*$", rest)
            name = rest[: members.start()] if members else rest
            blocks.append(
                _Block(
                    int(match.group(1)),
                    name.strip(" -\u2013\u2014:"),
                    members.group(1) if members else "",
                    line,
                )
            )
        elif blocks and (label := split_label(_TREE.sub("", text))) is not None:
            blocks[-1].labels.append((label[0], label[1], line))
    return blocks


def architecture(section: Section, streams: Sequence[StreamDraft], ledger: Ledger) -> None:
    """Read every ``STREAM N`` block: groups, thresholds, cross-checks, waits."""
    title = section.title
    blocks = _blocks(section)
    for block in blocks:
        _members(block, streams)
        if not block.members:
            ledger.skip(
                block.line.number,
                title,
                block.line.text,
                "names no focus area: no stream gets this group or gate",
            )
            continue
        group = f"stream-{block.number}" + (
            f"-{slugify(block.name, max_length=48)}" if slugify(block.name) else ""
        )
        for stream in block.members:
            if stream.group is not None:
                ledger.skip(
                    block.line.number,
                    title,
                    block.line.text,
                    f"{stream.id!r} is already in group {stream.group.value!r} "
                    f"(line {stream.group.line})",
                )
                continue
            stream.group = Sourced(group, block.line.number)
            ledger.map(block.line.number, title, block.line.text, f"streams[{stream.id}].group")
        for label, value, line in block.labels:
            _label(block, label, value, line, streams, title, ledger)
    by_number = {block.number: block for block in blocks}
    for block in blocks:
        for number, line in block.waits_for:
            other = by_number.get(number)
            if other is None or other is block or not other.members:
                ledger.skip(line.number, title, line.text, f"no stream {number} to wait for")
                continue
            for stream in block.members:
                stream.depends_on.extend(
                    Sourced(o.id, line.number) for o in other.members if o is not stream
                )
            ledger.map(
                line.number,
                title,
                line.text,
                f"depends_on: {', '.join(o.id for o in other.members)}",
            )


def _members(block: _Block, streams: Sequence[StreamDraft]) -> None:
    found: list[StreamDraft] = []
    for part in re.split(r"\s*(?:\+|,|&|/|\band\b)\s*", block.members_text):
        stream = match_stream(part, streams) if part.strip() else None
        if stream is not None and stream not in found:
            found.append(stream)
    for label, value, _ in block.labels:
        words = label.split()
        if words[-2:] == ["sub", "stream"] or words[-1:] == ["substream"]:
            name = " ".join(w for w in words if w not in {"sub", "stream", "substream"})
            stream = match_stream(name, streams)
        elif label in {"agent team", "team"} and not found:
            team = {name for name, _ in agent_names(value)}
            stream = next((s for s in streams if set(s.team) == team), None)
        else:
            continue
        if stream is not None and stream not in found:
            found.append(stream)
    block.members = found


def _label(
    block: _Block,
    label: str,
    value: str,
    line: Line,
    streams: Sequence[StreamDraft],
    title: str,
    ledger: Ledger,
) -> None:
    words = label.split()
    if label in {"agent team", "team"} or words[-2:] == ["sub", "stream"]:
        if label in {"agent team", "team"} and len(block.members) == 1:
            targets = block.members
        else:
            name = " ".join(w for w in words if w not in {"sub", "stream"})
            found = match_stream(name, block.members)
            targets = [found] if found is not None else []
        for stream in targets:
            _check_team(stream, value, line, title, ledger)
        if not targets:
            ledger.skip(line.number, title, line.text, "names no stream of this block")
    elif label == "timeline":
        _check_timelines(block, value, line, title, ledger)
    elif "gate" in words or "threshold" in words:
        threshold = percent(value)
        if threshold is None:
            ledger.skip(line.number, title, line.text, "no percentage: no gate threshold")
            return
        for stream in block.members:
            stream.threshold = Sourced(threshold, line.number)
        ledger.map(
            line.number,
            title,
            line.text,
            ", ".join(f"streams[{s.id}].gate.threshold" for s in block.members),
        )
    elif words[0] in {"dependencies", "dependency", "depends"}:
        low = value.lower()
        numbers = [int(n) for n in re.findall(r"\bstream\s*#?(\d{1,3})\b", low)]
        if numbers and _WAITS.search(low) and not re.search(r"\bparallel\b", low):
            block.waits_for.extend((n, line) for n in numbers)
        elif _PARALLEL.search(low) or low.startswith(("no ", "none", "-")):
            ledger.use(line.number)
            ledger.assume(
                line.number,
                title,
                line.text,
                f"stream {block.number} read as waiting for no other stream",
            )
        else:
            ledger.skip(line.number, title, line.text, "cannot tell which stream it waits for")
    else:
        ledger.skip(line.number, title, line.text, f"no plan field for {label!r}")


def _check_team(stream: StreamDraft, value: str, line: Line, title: str, ledger: Ledger) -> None:
    names = [name for name, _ in agent_names(value)]
    if not stream.team:
        stream.team = names
        stream.team_line = line.number
        ledger.map(line.number, title, line.text, f"streams[{stream.id}].team")
    elif set(names) == set(stream.team):
        ledger.use(line.number)
    else:
        ledger.skip(
            line.number,
            title,
            line.text,
            f"differs from {stream.id!r}'s Agent Team (line {stream.team_line}); "
            "the focus area's team kept",
        )


def _check_timelines(block: _Block, value: str, line: Line, title: str, ledger: Ledger) -> None:
    # "45-60 minutes (GPU), 30-45 minutes (Database)": one timeline per named member.
    pieces = re.findall(r"[^,(]+(?:\([^)]*\))?", value)
    for piece in pieces:
        found = timeline(piece)
        if found is None:
            continue
        named = re.search(r"\(([^)]*)\)", piece)
        stream = match_stream(named.group(1), block.members) if named else None
        targets = [stream] if stream is not None else block.members if len(pieces) == 1 else []
        for target in targets:
            _check_field(target, "timeline", found[0], line, title, ledger)
        if not targets:
            ledger.skip(
                line.number, title, line.text, f"{piece.strip()!r} names no stream of this block"
            )


def _check_field(
    stream: StreamDraft, key: str, value: object, line: Line, title: str, ledger: Ledger
) -> None:
    known = stream.fields.get(key)
    if known is None:
        stream.fields[key] = Sourced(value, line.number)
        ledger.map(line.number, title, line.text, f"streams[{stream.id}].{key}")
    elif _same(known.value, value):
        ledger.use(line.number)
    else:
        ledger.skip(
            line.number,
            title,
            line.text,
            f"{key} {value} for {stream.id!r} differs from the focus area's "
            f"{known.value} (line {known.line}); kept {known.value}",
        )


def _same(a: object, b: object) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower() or a.lower().startswith(b.lower() + " ")
    return a == b


_COLUMNS = (
    ("success_probability", ("success", "probability", "confidence")),
    ("risk", ("risk",)),
    ("timeline", ("timeline", "time", "duration")),
    ("methodology", ("methodology", "approach", "method")),
)


def decision_table(section: Section, streams: Sequence[StreamDraft], ledger: Ledger) -> None:
    """Rows of ``Focus Area  Success Probability  Risk Level  Timeline  Methodology`` (cells
    two spaces apart, or a pipe table): checked against the focus areas, filling gaps."""
    columns: list[str] = []
    for line in section.lines:
        text = line.text.strip()
        if not text:
            continue
        if re.fullmatch(r"[|:\-\s]+", text):  # a pipe table's rule line
            ledger.use(line.number)
            continue
        cells = [c.strip() for c in re.split(r"\s*\|\s*|\s{2,}|\t", text.strip("|")) if c.strip()]
        if not columns and len(cells) > 1 and "focus" in ascii_words(cells[0]):
            columns = [_column(cell) for cell in cells]
            ledger.use(line.number)
            continue
        stream = match_stream(cells[0], streams) if columns and len(cells) > 1 else None
        if stream is None:
            if columns and split_label(text) is not None:
                ledger.skip(
                    line.number,
                    section.title,
                    text,
                    "a plan-wide figure: no plan field (each stream has its own)",
                )
            continue
        for key, cell in zip(columns[1:], cells[1:], strict=False):
            value = _cell(key, cell)
            if value is not None:
                _check_field(stream, key, value, line, section.title, ledger)


def _column(header: str) -> str:
    words = ascii_words(header)
    return next((key for key, keys in _COLUMNS if any(k in words for k in keys)), "")


def _cell(key: str, cell: str) -> object:
    if key == "success_probability":
        return percent(cell)
    if key == "risk":
        return risk(cell).fraction
    if key == "timeline":
        found = timeline(cell)
        return found[0] if found is not None else None
    if key == "methodology":
        return cell.lower() or None
    return None
