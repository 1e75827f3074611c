"""A plan from the families of phase plans besides the seed's (see
:mod:`streams.markdown._generic`), and what the whole document says around the streams:
which stream waits for which (prerequisites, dependency chains, "blocked on" lists, phases
in order), concurrency limits, context-package token limits, and whether the document is a
plan at all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import yaml

from foundation.errors import PlanInvalid
from streams.markdown._document import Document, Kind, Line
from streams.markdown._draft import PlanDraft, Sourced, StreamDraft
from streams.markdown._focus import match_stream
from streams.markdown._generic import GenericStream, add_criterion, find_streams, read_stream
from streams.markdown._outline import Block, outline, table_rows
from streams.markdown._report import Ledger
from streams.markdown._sections import evidence, resources, summary
from streams.markdown._text import list_item, slugify, strip_emphasis

__all__ = [
    "SHAPES",
    "all_lines",
    "build_generic",
    "concurrency",
    "not_a_plan",
    "token_limits",
    "yaml_classes",
]

SHAPES = (
    "'### 1. NAME (HIGH PRIORITY)' focus areas",
    "'### Stream N: NAME' headings",
    "'## Phase N: NAME' headings",
    "'NAME Stream (Priority N):' blocks",
    "a table whose first column is Stream or Phase",
)


def build_generic(
    text: str, source: str, document: Document, ledger: Ledger, known: set[str]
) -> tuple[PlanDraft, list[GenericStream], dict[str, str]]:
    """The plan draft of a document in one of the families; raises PlanInvalid when the
    document names no stream (saying what it is when it is a context package)."""
    root, _ = outline(text)
    streams = find_streams(root, ledger)
    if not streams:
        raise _nothing(source, document)
    plan = PlanDraft(slugify(source.rsplit("/", 1)[-1].rsplit(".", 1)[0]) or "imported-plan")
    roles: dict[str, str] = {}
    for stream in streams:
        for name, role in read_stream(stream, ledger, known).items():
            roles.setdefault(name, role)
    drafts = [s.draft for s in streams]
    owned = {line.number for s in streams for line in s.lines} | {s.draft.line for s in streams}
    for stream in streams:
        _fill(stream, ledger)
    _phases(streams, ledger)
    for stream in streams:
        _resolve(stream, streams, ledger)
    _chains(root, streams, owned, ledger)
    for section in document.sections:
        if section.line in owned or any(line.number in owned for line in section.lines[:1]):
            continue
        if section.kind is Kind.TITLE and plan.title is None and slugify(section.title):
            plan.title = Sourced(section.title, section.line)
            plan.plan_id = slugify(section.title)
            ledger.map(section.line, section.title, section.title, "plan, title")
        elif section.kind is Kind.SUMMARY:
            summary(section, plan, ledger)
        elif section.kind is Kind.RESOURCES:
            resources(section, plan, ledger)
        elif section.kind is Kind.CRITERIA:
            global_criteria(section.title, list(section.lines), drafts, ledger)
        elif section.kind is Kind.EVIDENCE and _names_a_stream(section.lines, drafts):
            evidence(section, drafts, ledger)
    plan.streams = drafts
    return plan, streams, roles


_CRITERIA_COLUMNS = {
    "criterion", "criteria", "metric", "metrics", "target", "exit", "success", "acceptance",
    "gate", "done",
}  # fmt: skip
_GROUP = re.compile(r"^\s*(?:#+\s*)?(?:\*\*|__)?(?P<name>[^:*|]{1,80}?)(?:\*\*|__)?\s*:?\s*$")


def global_criteria(
    title: str, lines: list[Line], streams: Sequence[StreamDraft], ledger: Ledger
) -> None:
    """Criteria outside the streams, keyed by stream: a table with a stream column and a
    criteria column, or groups (``**Core**:`` then its items). Groups that name no stream
    are left for the report."""
    for header, rows in table_rows(lines):
        key = next((i for i, h in enumerate(header) if set(h.split()) & _STREAM_WORDS), None)
        wanted = [i for i, h in enumerate(header) if set(h.split()) & _CRITERIA_COLUMNS]
        if key is None or not wanted:
            continue
        if rows:
            ledger.use(rows[0][0].number - 1, rows[0][0].number - 2)  # header and rule
        for line, cells in rows:
            if key >= len(cells):
                continue
            stream = match_stream(strip_emphasis(cells[key]), streams)
            if stream is None:
                continue
            ledger.use(line.number)
            for index in wanted:
                if index < len(cells):
                    for part in re.split(r";|<br\s*/?>", cells[index]):
                        if part.strip():
                            add_criterion(stream, part.strip(), line.number, ledger)
    current: StreamDraft | None = None
    for line in lines:
        text = line.text
        if not text.strip() or text.lstrip().startswith("|"):
            continue
        item = list_item(text)
        if item is None or (text.lstrip()[:1] in "*_" and text.rstrip().endswith(":")):
            group = _GROUP.match(text)
            named = match_stream(group.group("name"), streams) if group else None
            current = named
            if named is not None:
                ledger.map(line.number, title, text, f"streams[{named.id}].gate")
            continue
        if current is not None:
            add_criterion(current, re.sub(r"^\[[ xX]\]\s*", "", item), line.number, ledger)


_STREAM_WORDS = {"stream", "streams", "workstream", "phase", "track", "epic", "milestone"}


def _names_a_stream(lines: Sequence[Line], streams: Sequence[StreamDraft]) -> bool:
    return any(
        match_stream(strip_emphasis(line.text).rstrip(":"), streams) is not None
        for line in lines
        if line.text.strip() and not line.text.lstrip().startswith(("-", "*", "|"))
    )


def not_a_plan(source: str, document: Document) -> PlanInvalid | None:
    """The refusal of a document that is not a phase plan (a context package such as the
    ones the orchestrator writes for agents), or None."""
    lines = [line for s in document.sections for line in s.lines]
    titles = [(s.line, s.title) for s in document.sections if s.title]
    for number, title in titles[:1]:
        if re.search(r"context\s+package|briefing|hand-?off\s+package", title, re.I):
            return PlanInvalid.one(
                source, number, 1,
                f"this is a context package ({title!r}), not a phase plan: it briefs agents "
                "and names no streams of steps",
                "import the phase plan it was made from; `orchestrator package PLAN AGENT` "
                "makes packages like it from a plan",
            )  # fmt: skip
    for line in lines[:8]:
        if re.search(r"token\s+limit\b.*\d|package\s+size\b.*\d", line.text, re.I):
            return PlanInvalid.one(
                source, line.number, 1,
                f"this looks like a context package ({line.text.strip()[:60]!r}), not a "
                "phase plan: it names no streams of steps",
                "import the phase plan it was made from",
            )  # fmt: skip
    return None


def _nothing(source: str, document: Document) -> PlanInvalid:
    refused = not_a_plan(source, document)
    if refused is not None:
        return refused
    return PlanInvalid.one(
        source, 0, 0,
        "no streams found: looked for " + ", ".join(SHAPES),
        "give each stream a heading such as '### Stream 1: NAME (P1)' or "
        "'## Phase 1: NAME (2 hours)', with '- agent-name: task' lines under it",
    )  # fmt: skip


def _fill(stream: GenericStream, ledger: Ledger) -> None:
    draft = stream.draft
    if not draft.steps and stream.deliverables:
        for item in stream.deliverables:
            draft.steps.append(Sourced(f"Deliver {item.value}", item.line))
            ledger.map(item.line, draft.heading, item.value, f"streams[{draft.id}].steps")
        ledger.assume(
            stream.deliverables[0].line, draft.heading, "",
            "no tasks: each deliverable is a step for the lead",
        )  # fmt: skip
    elif stream.deliverables:
        first, last = stream.deliverables[0], stream.deliverables[-1]
        ledger.skip(
            first.line, draft.heading, first.value,
            "deliverables of a stream that has tasks: no plan field", end_line=last.line,
        )  # fmt: skip
    if "timeline" not in draft.fields and stream.estimates:
        total = _total(stream.estimates)
        if total:
            draft.fields["timeline"] = Sourced(total, stream.estimates[0].line, "sum of tasks")
            ledger.assume(
                stream.estimates[0].line, draft.heading, "",
                f"timeline {total}: the sum of its tasks' estimates",
            )  # fmt: skip


_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _total(estimates: Sequence[Sourced[str]]) -> str:
    low = high = 0.0
    for item in estimates:
        parts = item.value.split("..")
        values = []
        for part in parts:
            match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", part)
            if match is None:
                return ""
            values.append(float(match.group(1)) * _SECONDS[match.group(2)])
        low += values[0]
        high += values[-1]

    def fmt(seconds: float) -> str:
        for unit in ("d", "h", "m"):
            if seconds >= _SECONDS[unit] and (seconds / _SECONDS[unit]) * 4 % 1 == 0:
                return f"{seconds / _SECONDS[unit]:g}{unit}"
        return f"{seconds / 60:g}m"

    return fmt(low) if low == high else f"{fmt(low)}..{fmt(high)}"


def _phases(streams: Sequence[GenericStream], ledger: Ledger) -> None:
    """Stream blocks under ``Phase N`` headings: the phase is their group, and each
    phase's streams wait for the previous phase's."""
    phases = list(dict.fromkeys(s.phase for s in streams if s.phase))
    if not phases:
        return
    for stream in streams:
        if stream.phase:
            stream.draft.group = Sourced(stream.phase, stream.block.line if stream.block else 0)
    for before, after in itertools.pairwise(phases):
        waited = [s for s in streams if s.phase == before]
        for stream in (s for s in streams if s.phase == after):
            for other in waited:
                stream.draft.depends_on.append(Sourced(other.draft.id, 0))
            ledger.assume(
                stream.draft.line, stream.draft.heading, "",
                f"{after} comes after {before}: waits for {', '.join(w.draft.id for w in waited)}",
            )  # fmt: skip


_REF = re.compile(
    r"\b(stream|phase|track|epic|milestone|stage|wave|task)s?\s*#?\s*"
    r"(\d+(?:\.\d+)?)(?:\s*(?:-|\u2013|to|through)\s*(\d+))?"
    r"((?:\s*(?:,|&|and)\s*\d+(?:\.\d+)?)*)",
    re.IGNORECASE,
)
_NONE = re.compile(r"^\s*(none|no\b|n/?a\b|nothing|independent|-\s*$)", re.IGNORECASE)


def _referenced(
    text: str, streams: Sequence[GenericStream], me: GenericStream
) -> list[GenericStream]:
    found: list[GenericStream] = []
    plain = strip_emphasis(text)
    for match in _REF.finditer(plain):
        kind = match.group(1).lower()
        numbers = [match.group(2)]
        if match.group(3):
            numbers = [str(n) for n in range(int(float(match.group(2))), int(match.group(3)) + 1)]
        numbers += re.findall(r"\d+(?:\.\d+)?", match.group(4) or "")
        for number in numbers:
            for other in streams:
                if other is me or other in found:
                    continue
                if kind == "task":
                    if number in other.task_ids:
                        found.append(other)
                elif (
                    other.draft.number is not None
                    and str(other.draft.number) == number
                    and kind == other.kind
                ):
                    found.append(other)
    if re.search(r"\ball\s+previous\b", plain, re.I):
        index = list(streams).index(me)
        found.extend(s for s in streams[:index] if s not in found)
    lower = plain.lower()
    for other in streams:
        name = other.draft.name.lower()
        if other is not me and other not in found and len(name) > 3 and name in lower:
            found.append(other)
    return found


def _resolve(stream: GenericStream, streams: Sequence[GenericStream], ledger: Ledger) -> None:
    source = stream.draft.dependencies
    if source is None:
        return
    draft = stream.draft
    where = f"streams[{draft.id}].depends_on"
    if _NONE.match(strip_emphasis(source.value)):
        ledger.use(source.line)
        return
    named = _referenced(source.value, streams, stream)
    if named:
        for other in named:
            draft.depends_on.append(Sourced(other.draft.id, source.line))
        ledger.map(source.line, draft.heading, source.value, where)
    else:
        ledger.skip(
            source.line, draft.heading, source.value, "names no stream of this plan: no wait"
        )


_WAIT_WORDS = re.compile(
    r"\b(blocked\s+(?:on|by)|depends?\s+on|waits?\s+for|needs?|requires?|after)\b", re.I
)
_CHAIN_TITLE = re.compile(r"depend|critical\s+path|blocker|order|sequence|chain", re.I)


def _chains(root: Block, streams: Sequence[GenericStream], owned: set[int], ledger: Ledger) -> None:
    """Dependency sections outside the streams: ``Stream 2 blocked on Stream 1`` and
    ``Phase 2 ... after Phase 1`` lines, ``Phase 1 ──► Phase 2, Phase 3`` arrows, and chains
    of streams one per line joined by ``↓`` lines."""
    for block in root.walk():
        if not block.level or not _CHAIN_TITLE.search(block.title) or block.line in owned:
            continue
        current: GenericStream | None = None
        down = False
        for line in block.lines:
            text = line.text
            if not text.strip() or line.number in owned:
                continue
            leading = _leading_stream(text, streams)
            if leading is not None:
                if current is not None and down and leading is not current:
                    _wait(leading, current, line.number, block.title, ledger)
                current, down = leading, False
            if _DOWN.search(text):
                down = True
            if (arrow := _RIGHT.search(text)) is not None and current is not None:
                before = [s for s in _referenced(text[: arrow.start()], streams, _NO_STREAM)
                          if s is not current]  # fmt: skip
                source = before[0] if len(before) == 1 else current
                for other in _referenced(text[arrow.end() :], streams, _NO_STREAM):
                    _wait(other, source, line.number, block.title, ledger)
                ledger.use(line.number)
            wait = _WAIT_WORDS.search(text)
            if wait is None:
                continue
            before = _referenced(text[: wait.start()], streams, _NO_STREAM)
            after = [
                s for s in _referenced(text[wait.end() :], streams, _NO_STREAM) if s not in before
            ]
            if len(before) == 1 and after:
                for other in after:
                    _wait(before[0], other, line.number, block.title, ledger)
                ledger.map(
                    line.number, block.title, text, f"streams[{before[0].draft.id}].depends_on"
                )


_DOWN = re.compile(r"[\u2193\u2b07]|^\s*[|v]\s*$")
_RIGHT = re.compile(r"\u25ba|\u2192|\u27f6|->|=>")


def _leading_stream(text: str, streams: Sequence[GenericStream]) -> GenericStream | None:
    words = strip_emphasis(text).strip()
    match = _REF.match(words)
    if match is None:
        return None
    found = _referenced(match.group(0), streams, _NO_STREAM)
    return found[0] if len(found) == 1 else None


def _wait(
    stream: GenericStream, other: GenericStream, line: int, title: str, ledger: Ledger
) -> None:
    if stream is other or any(d.value == other.draft.id for d in stream.draft.depends_on):
        return
    stream.draft.depends_on.append(Sourced(other.draft.id, line))
    ledger.assume(line, title, "", f"{stream.draft.id!r} waits for {other.draft.id!r}")


# A stand-in "me" for references read outside every stream.
_NO_STREAM = GenericStream(StreamDraft("", "", 0, "", None), [])


_CONCURRENCY = re.compile(
    r"(?:max(?:imum)?|up\s+to|at\s+most|no\s+more\s+than|limit(?:ed)?\s+(?:to|of)|cap(?:ped)?\s+(?:at|of)?)"
    r"\s*:?\s*(\d{1,3})\s+(?:parallel|concurrent|simultaneous)"
    r"|(\d{1,3})\s+(?:parallel|concurrent|simultaneous)\s+agents\s+(?:max|at\s+most|at\s+a\s+time)"
    r"|\b(?:max_?concurrent(?:_agents)?|max_?parallel(?:_agents)?|concurrency(?:_limit)?|parallelism)"
    r"\s*[:=]\s*(\d{1,3})\b",
    re.IGNORECASE,
)


def concurrency(lines: Sequence[Line]) -> Sourced[int] | None:
    """The document's limit on agents at work at once (``Max 3 parallel agents``,
    ``max_concurrent: 4``), or None."""
    for line in lines:
        match = _CONCURRENCY.search(line.text)
        if match is not None:
            value = int(next(g for g in match.groups() if g))
            if value >= 1:
                return Sourced(value, line.number)
    return None


_PACKAGE = re.compile(
    r"^\s*(?:#+\s*)?(?:\*\*)?(?P<name>[^()*:]{2,80}?)\s+(?:context\s+)?package\s*"
    r"[(\[]\s*(?:max\.?\s*)?(?P<n>\d[\d,]{1,6})\s*tokens?\s*[)\]]",
    re.IGNORECASE,
)
_PLAN_LIMIT = re.compile(
    r"(?:max(?:imum)?|limit|token\s+limit|under|at\s+most|up\s+to)\s*:?\s*(?P<n>\d[\d,]{1,6})\s*tokens?"
    r"|(?P<m>\d[\d,]{1,6})[- ]tokens?\s+(?:limit|max(?:imum)?|budget)",
    re.IGNORECASE,
)


def token_limits(lines: Sequence[Line], plan: PlanDraft, ledger: Ledger) -> dict[str, Sourced[int]]:
    """``Redis Authentication Context Package (3,500 tokens)`` -> that stream's agents'
    limit (returned by agent); ``(Max 3000 tokens)`` -> the plan's default limit."""
    per_agent: dict[str, Sourced[int]] = {}
    for line in lines:
        match = _PACKAGE.match(line.text)
        if match is not None:
            stream = match_stream(match.group("name"), plan.streams)
            value = int(match.group("n").replace(",", ""))
            if stream is not None and value >= 64:
                for name in stream.team:
                    current = per_agent.get(name)
                    if current is None or value < current.value:
                        per_agent[name] = Sourced(value, line.number)
                ledger.map(
                    line.number, stream.heading, line.text,
                    f"agents of {stream.id}: token_limit {value}",
                )  # fmt: skip
                continue
        found = _PLAN_LIMIT.search(line.text)
        if found is not None:
            # Several package limits: the smallest, so that every package fits.
            value = int((found.group("n") or found.group("m")).replace(",", ""))
            if value < 64:
                continue
            if plan.token_limit is None or value < plan.token_limit.value:
                plan.token_limit = Sourced(value, line.number)
            ledger.map(line.number, "", line.text, "defaults.token_limit")
    return per_agent


def all_lines(text: str) -> list[Line]:
    """Every line of ``text`` in the outline's form (repaired, fences marked)."""
    root, _ = outline(text)
    return sorted(
        (line for block in root.walk() for line in block.lines), key=lambda line: line.number
    )


_CAPS_KEYS = {
    "caps", "resource_classes", "resource_class_caps", "concurrency", "concurrency_limits",
    "limits", "class_caps",
}  # fmt: skip
_CLASS_KEYS = {"agent_classes", "classes", "agents", "resource_allocation", "allocation"}


def yaml_classes(
    text: str, ledger: Ledger
) -> tuple[dict[str, int | None], dict[str, str], int] | None:
    """Resource classes in a YAML block: ``caps:``/``resource_classes:`` (class -> cap, null
    for unlimited) and ``agent_classes:`` (agent -> class, or class -> [agents]); with the
    block's first line. None when no block says so."""
    for start, body in _fences(text):
        try:
            data = yaml.safe_load("\n".join(body))
        except yaml.YAMLError:
            continue
        if not isinstance(data, dict):
            continue
        caps: dict[str, int | None] = {}
        classes: dict[str, str] = {}
        for key, value in data.items():
            name = slugify(str(key)).replace("-", "_")
            if name in _CAPS_KEYS and isinstance(value, dict):
                for cls, cap in value.items():
                    ident = slugify(str(cls))
                    if ident and (cap is None or (type(cap) is int and cap >= 1)):
                        caps[ident] = cap
            elif name in _CLASS_KEYS and isinstance(value, dict):
                for left, right in value.items():
                    if isinstance(right, str):
                        classes[slugify(str(left))] = slugify(right)
                    elif isinstance(right, list):
                        for agent in right:
                            classes[slugify(str(agent))] = slugify(str(left))
        if caps:
            classes = {a: c for a, c in classes.items() if a and c in caps}
            ledger.map(start, "", "```", f"caps {caps}")
            ledger.use(*range(start, start + len(body) + 2))
            return caps, classes, start
    return None


def _fences(text: str) -> list[tuple[int, list[str]]]:
    """Each fenced block's first line (its fence) and body."""
    out: list[tuple[int, list[str]]] = []
    start, fence = 0, ""
    body: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not fence and (stripped.startswith("```") or stripped.startswith("~~~")):
            fence, start, body = stripped[:3], number, []
        elif fence and stripped.startswith(fence) and not stripped.strip(fence[0]):
            out.append((start, body))
            fence = ""
        elif fence:
            body.append(line.rstrip("\r"))
    return out
