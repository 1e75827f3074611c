"""The plan-wide sections of a Markdown phase plan, read into the drafts.

Resource allocation matrix -> caps and agent classes; conflict prevention's resource locking
-> ``resources``; rollback procedures, quantitative success criteria and mandatory evidence
-> each stream's rollback, gate criteria and evidence; the executive summary -> ``summary``.
Most of these sections are lists grouped under a focus area's name (``GPU Optimization:``
then ``- ...``), inside a fenced block or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Literal

from streams.markdown._criteria import translate
from streams.markdown._document import Line, Section
from streams.markdown._draft import AgentDraft, PlanDraft, Sourced, StreamDraft
from streams.markdown._focus import match_stream
from streams.markdown._report import Ledger
from streams.markdown._text import IDENTIFIER, list_item, slugify, split_label, strip_emphasis
from streams.markdown._values import class_header, duration, evidence_id, recovery_budget

__all__ = ["conflict", "criteria", "evidence", "resources", "rollback", "summary"]

EntryKind = Literal["header", "item", "other"]


def _entries(lines: Sequence[Line]) -> Iterator[tuple[EntryKind, Line, str, str]]:
    """(kind, line, text, value) for each non-blank line: a group ``header`` (its name and
    the value after the colon), a list ``item`` (its text) or ``other`` (the line)."""
    for line in lines:
        if not line.text.strip():
            continue
        item = list_item(line.text)
        if item is not None and item.endswith(":") and not line.heading:
            # "- **GPU Optimization**:" opening a nested list names a group too.
            yield "header", line, item.removesuffix(":").strip(), ""
            continue
        if item is not None and not line.heading:
            yield "item", line, item, ""
            continue
        label = split_label(line.text)
        if label is not None:
            name = strip_emphasis(line.text).split(":", 1)[0].strip(" -*+")
            yield "header", line, name, label[1]
        else:
            yield "other", line, line.text, ""


def _grouped(
    section: Section,
    lines: Sequence[Line],
    streams: Sequence[StreamDraft],
    ledger: Ledger,
    what: str,
) -> Iterator[tuple[StreamDraft, EntryKind, Line, str, str]]:
    """The entries of a section of lists grouped under focus-area names, each with its
    stream; headers that name no focus area are reported with their items."""
    current: StreamDraft | None = None
    orphan = ""
    for kind, line, text, value in _entries(lines):
        if kind == "header":
            current = match_stream(text, streams)
            orphan = "" if current is not None else text
            if current is None:
                ledger.skip(
                    line.number,
                    section.title,
                    line.text,
                    f"names no focus area: its {what} are left out",
                )
                continue
        elif kind == "item" and current is None:
            reason = (
                f"under {orphan!r}, which names no focus area"
                if orphan
                else "an item under no focus-area name"
            )
            ledger.skip(line.number, section.title, line.text, reason)
            continue
        if current is not None:
            yield current, kind, line, text, value


def rollback(section: Section, streams: Sequence[StreamDraft], ledger: Ledger) -> None:
    """``X Rollback:`` groups: their items become rollback sentence steps; ``(2-minute
    recovery)`` anywhere in the group becomes the budget (and leaves the sentence)."""
    for stream, kind, line, text, value in _grouped(
        section, section.lines, streams, ledger, "rollback steps"
    ):
        where = f"streams[{stream.id}].rollback"
        if kind == "header":
            stream.rollback_line = stream.rollback_line or line.number
            ledger.map(line.number, section.title, line.text, where)
            found = recovery_budget(line.text)
            budget = found[0] if found is not None else duration(value) if value else None
            if budget is not None:
                _budget(stream, budget, line, section, ledger)
        elif kind == "item":
            found = recovery_budget(text)
            sentence = text
            if found is not None:
                _budget(stream, found[0], line, section, ledger)
                sentence = found[1] or text
            stream.rollback_steps.append(Sourced(sentence, line.number))
            stream.rollback_line = stream.rollback_line or line.number
            ledger.map(line.number, section.title, text, f"{where}.steps")


def _budget(stream: StreamDraft, value: str, line: Line, section: Section, ledger: Ledger) -> None:
    if stream.rollback_budget is not None and stream.rollback_budget.value != value:
        ledger.skip(
            line.number,
            section.title,
            line.text,
            f"a second recovery time; kept {stream.rollback_budget.value} "
            f"(line {stream.rollback_budget.line})",
        )
        return
    stream.rollback_budget = Sourced(value, line.number)
    ledger.map(line.number, section.title, line.text, f"streams[{stream.id}].rollback.budget")


_EVIDENCE_MARKER = re.compile(r"\bevidence\b", re.IGNORECASE)


def _evidence_marker(line: Line, streams: Sequence[StreamDraft]) -> bool:
    """``MANDATORY EVIDENCE FOR EACH FOCUS AREA:``: a line (not an item) about evidence
    that names no focus area."""
    return (
        list_item(line.text) is None
        and _EVIDENCE_MARKER.search(line.text) is not None
        and match_stream(line.text.split(":", 1)[0], streams) is None
    )


def criteria(section: Section, streams: Sequence[StreamDraft], ledger: Ledger) -> None:
    """Groups of success criteria in words: each becomes a gate criterion when it can be
    turned into the gate grammar (:mod:`streams.markdown._criteria`), else it is reported. A
    ``MANDATORY EVIDENCE`` line hands the rest of the section to :func:`evidence`."""
    lines = list(section.lines)
    for index, line in enumerate(lines):
        if _evidence_marker(line, streams):
            evidence(section, streams, ledger, lines[index:])
            lines = lines[:index]
            break
    for stream, kind, line, text, _ in _grouped(section, lines, streams, ledger, "criteria"):
        if kind == "header":
            ledger.map(line.number, section.title, line.text, f"streams[{stream.id}].gate")
            continue
        if kind != "item":
            continue
        found = translate(text, stream.title)
        if found.expr is None:
            ledger.skip(line.number, section.title, text, found.note)
            continue
        comment = text if not found.note else f"{text} ({found.note})"
        stream.criteria.append(Sourced(found.expr, line.number, comment))
        ledger.map(
            line.number, section.title, text, f"streams[{stream.id}].gate.criteria: {found.expr}"
        )


def evidence(
    section: Section,
    streams: Sequence[StreamDraft],
    ledger: Ledger,
    lines: Sequence[Line] | None = None,
) -> None:
    """Groups of mandatory evidence: each item becomes an evidence requirement of its
    stream, its id made from its first words (``nvidia-smi-output``)."""
    body = section.lines if lines is None else lines
    rest: list[Line] = []
    for line in body:
        if not rest and _evidence_marker(line, streams):
            ledger.map(
                line.number,
                section.title,
                line.text,
                "every stream's evidence (each item is required)",
            )
            continue
        rest.append(line)
    for stream, kind, line, text, _ in _grouped(section, rest, streams, ledger, "evidence"):
        where = f"streams[{stream.id}].evidence"
        if kind == "header":
            ledger.map(line.number, section.title, line.text, where)
        elif kind == "item":
            base = evidence_id(text)
            taken = {e.value[0] for e in stream.evidence}
            ev_id, n = base, 2
            while ev_id in taken:
                ev_id, n = f"{base}-{n}", n + 1
            stream.evidence.append(Sourced((ev_id, text), line.number))
            ledger.map(line.number, section.title, text, f"{where}: {ev_id}")


def resources(section: Section, plan: PlanDraft, ledger: Ledger) -> None:
    """``CPU-Intensive Agents (Max 2 concurrent):`` headers and their ``- agent (role)``
    items: caps per class and each agent's class and role."""
    current: str | None = None
    plan.caps_line = plan.caps_line or section.line
    for kind, line, text, _ in _entries(section.lines):
        header = class_header(line.text) if kind != "item" else None
        if header is not None:
            current, cap, limit = header
            if current in plan.caps and plan.caps[current] != cap:
                ledger.skip(
                    line.number,
                    section.title,
                    line.text,
                    f"class {current!r} given twice; kept cap {plan.caps[current]}",
                )
                continue
            plan.caps[current] = cap
            ledger.map(line.number, section.title, line.text, f"caps.{current}: {cap}")
            if cap is None and "unlimited" not in limit.lower():
                ledger.assume(
                    line.number,
                    section.title,
                    line.text,
                    f"no concurrency number: class {current!r} unlimited (null)",
                )
        elif kind == "item" and current is not None:
            name_part, _, role = text.partition("(")
            name = name_part.strip(" `")
            name = name if IDENTIFIER.match(name) else slugify(name)
            if not name:
                continue
            if name in plan.agents:
                ledger.skip(
                    line.number,
                    section.title,
                    text,
                    f"{name!r} is already in class {plan.agents[name].resource_class!r} "
                    f"(line {plan.agents[name].line})",
                )
                continue
            plan.agents[name] = AgentDraft(current, role.rsplit(")", 1)[0].strip(), line.number)
            ledger.map(line.number, section.title, text, f"agents.{name}.class: {current}")


_LOCK_LABELS = ("resource locking", "resource locks", "locks", "shared resources", "locking")


def conflict(section: Section, plan: PlanDraft, ledger: Ledger) -> None:
    """The ``Resource Locking`` line's components (``(Redis, database, API gateway)``)
    become the plan's ``resources``; the rest is what the scheduler does anyway."""
    for line in section.lines:
        label = split_label(line.text)
        if label is None or label[0] not in _LOCK_LABELS:
            continue
        inside = re.search(r"\(([^)]*)\)", label[1])
        listed = inside.group(1) if inside else label[1]
        names = [slugify(part) for part in re.split(r",|;|\s+and\s+|&", listed)]
        found = [name for name in dict.fromkeys(names) if name]
        if not found:
            continue
        plan.resources = Sourced(found, line.number)
        ledger.map(line.number, section.title, line.text, f"resources: {', '.join(found)}")
        ledger.assume(
            line.number,
            section.title,
            line.text,
            "no step takes these locks yet: add `locks:` to the steps that touch them",
        )


def summary(section: Section, plan: PlanDraft, ledger: Ledger) -> None:
    """The executive summary's prose, joined into the plan's ``summary``."""
    parts: list[str] = []
    first = 0
    for line in section.lines:
        text = strip_emphasis(list_item(line.text) or line.text)
        if not text:
            continue
        first = first or line.number
        parts.append(text)
        ledger.map(line.number, section.title, line.text, "summary")
    if parts and plan.summary is None:
        plan.summary = Sourced(" ".join(" ".join(parts).split()), first)
