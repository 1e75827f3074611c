"""Streams from the families of phase plans besides the seed's focus areas.

Streams are found in this order (the first shape that gives any wins; a phase that holds
stream blocks becomes their ``group``):

* ``NAME Stream (Priority N):`` blocks (in prose or YAML), their items ``agent: task``;
* headings ``### Stream N: NAME``, ``## Workstream A - NAME [P0]``, ``### NAME Stream``;
* headings ``## Phase N: NAME (2 hours)``, ``## Track N``, ``## Milestone N``;
* a table of streams (a first column headed Stream/Phase/Workstream/Track).

Inside a stream (see :class:`_StreamReader`): ``**Lead**:``/``**Lead Agent**:``, ``**Team**:``
and ``**Agents**:`` (a list of names, or a head count that is never read as names),
``agent: task`` lines, ``#### Task N.N: TITLE`` sub-headings with ``**Agent**:`` and
``**Estimated Effort**:``, ``### <Agent> Tasks`` sections, estimates, prerequisites,
exit/acceptance/success criteria and evidence lists. Each step goes to the agent the
document names for it; only steps with no named agent go to the stream's lead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streams.markdown._criteria import translate
from streams.markdown._document import Line
from streams.markdown._draft import Sourced, StreamDraft
from streams.markdown._names import (
    AGENT_LINE,
    add_team,
    agent_list,
    agent_name,
    member_item,
    raw_agent,
    slug_label,
)
from streams.markdown._outline import (
    Block,
    StreamHeading,
    estimate,
    priority_of,
    stream_block_line,
    stream_heading,
    table_rows,
)
from streams.markdown._report import Ledger
from streams.markdown._text import ascii_words, list_item, slugify, split_label, strip_emphasis
from streams.markdown._values import evidence_id

__all__ = ["GenericStream", "find_streams", "read_stream"]


@dataclass(slots=True)
class GenericStream:
    """A stream found in the document: its draft and where its lines are."""

    draft: StreamDraft
    lines: list[Line]
    block: Block | None = None
    phase: str = ""
    step_agents: dict[int, str] = field(default_factory=dict)
    estimates: list[Sourced[str]] = field(default_factory=list)
    task_ids: dict[str, int] = field(default_factory=dict)
    deliverables: list[Sourced[str]] = field(default_factory=list)
    kind: str = "stream"  # what its heading called it: stream, phase, track...
    from_block: bool = False  # a ``NAME Stream:`` block (its lines may sit in a fence)


def _new(heading: StreamHeading, line: int, title: str, taken: set[str], phase: str) -> StreamDraft:
    name = heading.name or f"{heading.kind.capitalize()} {heading.number}".strip()
    base = slugify(name) or f"{heading.kind}-{heading.number or len(taken) + 1}"
    if heading.kind != "stream" and heading.number and not heading.name:
        base = slugify(f"{heading.kind} {heading.number}")
    stream_id = base
    if stream_id in taken and phase:
        stream_id = f"{base}-{phase}"
    n = 2
    while stream_id in taken:
        stream_id, n = f"{base}-{n}", n + 1
    taken.add(stream_id)
    number = int(heading.number) if heading.number.isdigit() else None
    draft = StreamDraft(stream_id, name, line, title, number)
    draft.title = name
    return draft


def find_streams(root: Block, ledger: Ledger) -> list[GenericStream]:
    """Every stream the document names, in file order (empty: none of the shapes)."""
    taken: set[str] = set()
    found = _block_streams(root, taken)
    if found:
        return found
    headed = [b for b in root.walk() if b.level and stream_heading(b.title) is not None]
    if root.children and root.children[0] in headed and root.children[0].level == 1:
        headed.remove(root.children[0])  # the document's title ("# Phase 5: ...")
    for kinds in ({"stream"}, {"phase", "track", "epic", "milestone", "stage", "wave"}):
        chosen = [b for b in headed if (h := stream_heading(b.title)) and h.kind in kinds]
        if chosen:
            level = min(b.level for b in chosen)
            out = []
            for block in chosen:
                heading = stream_heading(block.title)
                if block.level != level or heading is None:
                    continue
                draft = _new(heading, block.line, block.title, taken, "")
                _heading_fields(draft, heading, block.line, ledger)
                out.append(GenericStream(draft, block.all_lines(), block, kind=heading.kind))
            return out
    return _table_streams(root, taken, ledger)


def _heading_fields(draft: StreamDraft, heading: StreamHeading, line: int, ledger: Ledger) -> None:
    where = f"streams[{draft.id}]"
    ledger.map(line, draft.heading, draft.heading, where)
    if heading.priority:
        draft.priority = Sourced(heading.priority, line)
        ledger.map(line, draft.heading, draft.heading, f"{where}.priority")
    if heading.duration and (found := estimate(heading.duration)) is not None:
        draft.fields["timeline"] = Sourced(found[0], line, found[1])
        ledger.map(line, draft.heading, heading.duration, f"{where}.timeline")


def _phase_of(block: Block) -> str:
    heading = stream_heading(block.title)
    if heading is not None and heading.kind != "stream" and heading.number:
        return slugify(f"{heading.kind} {heading.number}")
    return ""


def _block_streams(root: Block, taken: set[str]) -> list[GenericStream]:
    """``NAME Stream (Priority N):`` blocks: the lines after each, up to the next block,
    the end of its fence, or a line indented no deeper than the block's own."""
    out: list[GenericStream] = []
    for block in root.walk():
        phase = _phase_of(block)
        current: GenericStream | None = None
        indent = 0
        for line in block.lines:
            heading = stream_block_line(line.text) if line.text.strip() else None
            if heading is not None:
                draft = _new(heading, line.number, line.text.strip(), taken, phase)
                if heading.priority:
                    draft.priority = Sourced(heading.priority, line.number)
                current = GenericStream(draft, [], block, phase, from_block=True)
                indent = len(line.text) - len(line.text.lstrip())
                out.append(current)
                continue
            if current is None:
                continue
            stripped = line.text.strip()
            deeper = len(line.text) - len(line.text.lstrip()) > indent or (
                stripped.startswith(("-", "*", "+")) and indent == 0
            )
            if not stripped:
                if line.fenced and line.text == "":
                    current = None  # a fence line closes the block
                continue
            if deeper:
                current.lines.append(line)
            else:
                current = None
    return out


def _table_streams(root: Block, taken: set[str], ledger: Ledger) -> list[GenericStream]:
    out: list[GenericStream] = []
    for block in root.walk():
        for header, rows in table_rows(block.lines):
            if not header or not header[0] or ascii_words(header[0])[0] not in _STREAM_COLUMNS:
                continue
            for line, cells in rows:
                name = strip_emphasis(cells[0]) if cells else ""
                heading = stream_heading(name) or StreamHeading("stream", "", name, None, "")
                if not slugify(heading.name or name):
                    continue
                draft = _new(heading, line.number, name, taken, "")
                stream = GenericStream(draft, [], block, kind=heading.kind)
                _row(stream, header, cells, line, ledger)
                out.append(stream)
    return out


_STREAM_COLUMNS = {"stream", "streams", "workstream", "phase", "track", "epic", "milestone"}


def _row(
    stream: GenericStream, header: list[str], cells: list[str], line: Line, ledger: Ledger
) -> None:
    """One table row's cells by column: lead, agents, priority, timeline, dependencies."""
    draft = stream.draft
    where = f"streams[{draft.id}]"
    ledger.map(line.number, "table of streams", line.text, where)
    for column, cell in zip(header[1:], cells[1:], strict=False):
        words = set(column.split())
        value = strip_emphasis(cell)
        if not value or value in {"-", "\u2014", "n/a"}:
            continue
        if words & {"lead", "owner"}:
            names = agent_list(value)
            if names and draft.lead is None:
                draft.lead = Sourced(names[0], line.number, f"{column} column")
                add_team(draft, names[:1], line.number)
        elif words & {"agents", "agent", "team", "parallel", "assignee", "assigned"}:
            add_team(draft, agent_list(value), line.number)
        elif "priority" in words and (p := priority_of(f"priority {value}")):
            draft.priority = Sourced(p, line.number)
        elif words & {"timeline", "duration", "estimate", "effort", "time"}:
            if (found := estimate(value)) is not None:
                draft.fields["timeline"] = Sourced(found[0], line.number, found[1])
        elif words & {"depends", "dependencies", "prerequisites", "after"}:
            draft.dependencies = Sourced(value, line.number)
        elif words & {"goal", "objective", "description"}:
            draft.fields.setdefault("strategy", Sourced(value, line.number))


# -- a stream's lines ------------------------------------------------------------------

_TASK = re.compile(
    r"^(?:task|step|subtask)\s*#?\s*(\d+(?:\.\d+)*)\s*[:.)\-\u2013\u2014]?\s*(.*)$", re.I
)
_AGENT_TASKS = re.compile(r"^(?P<name>.+?)\s+(?:tasks?|assignments?|responsibilities|work)$", re.I)
_MODES = (
    ("criteria", ("criteria", "criterion", "metrics", "checkpoints?", "kpis", "gates?")),
    ("evidence", ("evidence",)),
    ("deliverables", ("deliverables", "deliverable", "outputs", "artifacts")),
    ("steps", ("tasks", "steps", "sequence", "actions", "implementation", "todo", "work items")),
)  # fmt: skip
_LABELS = {
    "lead": "lead", "lead agent": "lead", "owner": "lead", "stream lead": "lead",
    "co lead": "lead", "coordinator": "lead", "team lead": "lead", "tech lead": "lead",
    "lead engineer": "lead", "lead developer": "lead", "owner agent": "lead",
    "support agent": "team", "supporting agent": "team", "helper agents": "team",
    "team": "team", "agents": "team", "agent team": "team", "parallel agents": "team",
    "assigned agents": "team", "members": "team", "support agents": "team",
    "supporting agents": "team", "specialists": "team",
    "agent": "agent", "assigned to": "agent", "assignee": "agent", "assigned agent": "agent",
    "primary agent": "agent",
    "timeline": "timeline", "duration": "timeline", "estimate": "timeline",
    "estimated effort": "timeline", "estimated time": "timeline", "effort": "timeline",
    "time estimate": "timeline", "eta": "timeline", "time": "timeline",
    "prerequisites": "depends", "prerequisite": "depends", "depends on": "depends",
    "dependencies": "depends", "dependency": "depends", "blocked by": "depends",
    "requires": "depends", "after": "depends", "waits for": "depends",
    "priority": "priority",
    "goal": "goal", "objective": "goal", "purpose": "goal", "description": "description",
    "exit criteria": "criteria", "acceptance criteria": "criteria",
    "success criteria": "criteria", "success metrics": "criteria", "done when": "criteria",
    "definition of done": "criteria", "checkpoints": "criteria",
    "evidence": "evidence", "required evidence": "evidence", "evidence requirements": "evidence",
    "deliverables": "deliverables", "outputs": "deliverables",
    "tasks": "steps", "steps": "steps", "implementation steps": "steps", "actions": "steps",
}  # fmt: skip
_NUMBERED_ITEM = re.compile(r"^\s{0,3}\d{1,3}[.)]\s+\S")
_CHECKBOX = re.compile(r"^(?:\[[ xX~-]?\]\s*|[\u2705\u2611\u2714\u2713\u274c\u2b1c]\ufe0f?\s*)+")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+\w+\s*\(")
_DOCSTRING = re.compile(r"^\s*(?:\"\"\"|''')(.+?)(?:\"\"\"|''')\s*$")


_TASK_COLUMNS = {"task", "tasks", "step", "steps", "action", "work", "deliverable", "item"}


def _column(header: list[str], words: set[str]) -> int | None:
    """The index of the first column whose heading has one of ``words``."""
    return next((i for i, h in enumerate(header) if set(h.split()) & words), None)


def _mode_of(title: str) -> str:
    words = " ".join(ascii_words(title))
    for mode, keys in _MODES:
        if any(re.search(rf"\b{k}\b", words) for k in keys):
            return mode
    return ""


def _item_text(text: str) -> str:
    return " ".join(_CHECKBOX.sub("", strip_emphasis(text)).split())


class _StreamReader:
    """Walks one stream's lines (sub-headings included as ``Title:`` lines)."""

    def __init__(self, stream: GenericStream, ledger: Ledger, known: set[str]) -> None:
        self.s = stream
        self.d = stream.draft
        self.ledger = ledger
        self.known = known
        self.where = f"streams[{self.d.id}]"
        self.mode = ""  # the sub-section: criteria, evidence, deliverables, steps, agent
        self.mode_agent = ""
        self.pending = ""  # a label with no value opens a list: its key
        self.task: int | None = None  # index of the step a Task sub-heading opened
        self.roles: dict[str, str] = {}
        self.task_deps: list[Sourced[str]] = []
        self.has_defs = False

    def read(self) -> None:
        rows: dict[int, tuple[list[str], list[str]]] = {}
        for header, table in table_rows(self.s.lines):
            if _column(header, _TASK_COLUMNS) is not None:
                for row_line, cells in table:
                    rows[row_line.number] = (header, cells)
                if table:
                    self.ledger.use(table[0][0].number - 1, table[0][0].number - 2)
        for line in self.s.lines:
            text = line.text
            if not text.strip():
                continue
            if line.heading:
                self._heading(line)
                continue
            if line.number in rows:
                self._row(line, *rows[line.number])
                continue
            if line.fenced and not self.s.from_block:
                self._fenced(line)
                continue
            agent_line = AGENT_LINE.match(text)
            if agent_line is not None and not self.pending:
                agent = agent_name(agent_line.group("name"), self.known)
                if agent is not None and slug_label(agent_line.group("name")) not in _LABELS:
                    self._member(agent, line.number)
                    self._step(strip_emphasis(agent_line.group("task")), line.number, agent)
                    continue
            item = list_item(text)
            label = split_label(text)
            if (
                label is not None
                and (item is None or label[0] in _LABELS or raw_agent(text, self.known))
                and self._label(line, label[0], label[1])
            ):
                continue
            if item is not None and self._item(line, _item_text(item)):
                continue

    # sub-headings
    def _heading(self, line: Line) -> None:
        title = line.text.rstrip(":")
        self.pending, self.task = "", None
        self.mode, self.mode_agent = _mode_of(title), ""
        if (match := _TASK.match(title)) is not None:
            name = match.group(2).strip() or f"Task {match.group(1)}"
            self.task = self._step(name, line.number, None)
            self.s.task_ids[match.group(1)] = self.task
            self.mode = ""
        elif (match := _AGENT_TASKS.match(title)) is not None and (
            agent := agent_name(match.group("name"), self.known) or slugify(match.group("name"))
            if len(ascii_words(match.group("name"))) <= 4
            else None
        ):
            self.mode, self.mode_agent = "agent", agent
            self._member(agent, line.number)
            self.has_defs = False
        else:
            if not self.mode:
                return
        self.ledger.use(line.number)

    def _fenced(self, line: Line) -> None:
        if self.mode != "agent":
            if self.mode or self.pending:
                item = list_item(line.text)
                if item is not None:
                    self._item(line, _item_text(item))
            return
        if _DEF.match(line.text):
            self.has_defs = True
            self.ledger.use(line.number)
            return
        doc = _DOCSTRING.match(line.text)
        if doc is not None and self.has_defs:
            self._step(doc.group(1).strip(), line.number, self.mode_agent)
            return
        item = list_item(line.text)
        if item is not None and not self.has_defs:
            self._step(_item_text(item), line.number, self.mode_agent)
        elif line.text.strip():
            self.ledger.use(line.number)  # the code around the tasks: part of the section

    def _row(self, line: Line, header: list[str], cells: list[str]) -> None:
        """A row of a table of tasks: its task, agent and estimate columns."""
        task = _column(header, _TASK_COLUMNS)
        if task is None or task >= len(cells) or not strip_emphasis(cells[task]):
            return
        who = _column(header, {"agent", "agents", "owner", "assignee", "assigned", "who"})
        names = (
            agent_list(strip_emphasis(cells[who])) if who is not None and who < len(cells) else []
        )
        for name in names:
            self._member(name, line.number)
        self._step(strip_emphasis(cells[task]), line.number, names[0] if names else None)
        when = _column(header, {"estimate", "effort", "duration", "time", "hours"})
        if when is not None and when < len(cells) and (found := estimate(cells[when])):
            self.s.estimates.append(Sourced(found[0], line.number))

    # labels
    def _label(self, line: Line, label: str, value: str) -> bool:
        key = _LABELS.get(label)
        n, title = line.number, self.d.heading
        if key is None:
            agent = raw_agent(line.text, self.known)
            if agent is not None and value:
                # `agent: task` / `- **agent**: task`
                self._member(agent, n)
                self._step(value, n, agent)
                return True
            return False
        if key in {"team", "criteria", "evidence", "deliverables", "steps"} and not value:
            self.pending = key
            self.ledger.use(n)
            return True
        self.pending = ""
        if key == "lead":
            names = agent_list(value)
            if names:
                if self.d.lead is None:
                    self.d.lead = Sourced(names[0], n)
                for name in names:
                    self._member(name, n)
                self.ledger.map(n, title, line.text, f"{self.where}.lead")
                return True
        elif key == "team":
            names = agent_list(value)
            if names:
                add_team(self.d, names, n)
                self.ledger.map(n, title, line.text, f"{self.where}.team")
            else:
                self.ledger.skip(
                    n, title, line.text, "a head count, not agent names: no agent made"
                )
            return True
        elif key == "agent":
            names = agent_list(value)
            if names and self.task is not None:
                self.s.step_agents[self.task] = names[0]
                self._member(names[0], n)
                self.ledger.map(n, title, line.text, f"{self.where}.steps[{self.task + 1}].agent")
                return True
            if names:
                add_team(self.d, names, n)
                self.ledger.map(n, title, line.text, f"{self.where}.team")
                return True
        elif key == "timeline" and (found := estimate(value)) is not None:
            if self.task is not None:
                self.s.estimates.append(Sourced(found[0], n))
                self.ledger.use(n)
            else:
                self.d.fields["timeline"] = Sourced(found[0], n, found[1])
                self.ledger.map(n, title, line.text, f"{self.where}.timeline")
            return True
        elif key == "depends":
            if self.task is not None:
                self.task_deps.append(Sourced(value, n))
                self.ledger.use(n)
            elif self.d.dependencies is None:
                self.d.dependencies = Sourced(value, n)
                self.ledger.use(n)
            return True
        elif key == "priority" and (p := priority_of(f"priority {value}")):
            self.d.priority = Sourced(p, n)
            self.ledger.map(n, title, line.text, f"{self.where}.priority")
            return True
        elif key == "description" and self.task is not None and value:
            step = self.d.steps[self.task]
            self.d.steps[self.task] = Sourced(f"{step.value}: {value}", step.line, step.note)
            self.ledger.map(n, title, line.text, f"{self.where}.steps[{self.task + 1}]")
            return True
        elif key in {"goal", "description"} and value and "strategy" not in self.d.fields:
            self.d.fields["strategy"] = Sourced(" ".join(value.split()), n)
            self.ledger.map(n, title, line.text, f"{self.where}.strategy")
            return True
        elif key in {"criteria", "evidence", "deliverables", "steps"} and value:
            self._collect(key, line, value)
            return True
        return False

    # list items
    def _item(self, line: Line, text: str) -> bool:
        if not text:
            return False
        key = self.pending or self.mode
        if key == "team":
            name, lead, role = member_item(text, self.known)
            if name:
                self._member(name, line.number)
                if lead and self.d.lead is None:
                    self.d.lead = Sourced(name, line.number)
                if role:
                    self.roles.setdefault(name, role)
                self.ledger.map(line.number, self.d.heading, text, f"{self.where}.team")
                return True
            return False
        if key == "agent":
            self._step(text, line.number, self.mode_agent)
            return True
        if key in {"criteria", "evidence", "deliverables", "steps"}:
            self._collect(key, line, text)
            return True
        if not key and self.task is None and _NUMBERED_ITEM.match(line.text):
            self._step(text, line.number, None)  # a numbered list in the stream: its steps
            return True
        return False

    def _collect(self, key: str, line: Line, text: str) -> None:
        n, title = line.number, self.d.heading
        if key == "steps":
            self._step(text, n, None)
        elif key == "deliverables":
            self.s.deliverables.append(Sourced(text, n))
            self.ledger.use(n)
        elif key == "evidence":
            base = evidence_id(text)
            taken = {e.value[0] for e in self.d.evidence}
            ev_id, k = base, 2
            while ev_id in taken:
                ev_id, k = f"{base}-{k}", k + 1
            self.d.evidence.append(Sourced((ev_id, text), n))
            self.ledger.map(n, title, text, f"{self.where}.evidence: {ev_id}")
        else:
            add_criterion(self.d, text, n, self.ledger)

    def _step(self, text: str, line: int, agent: str | None) -> int:
        self.d.steps.append(Sourced(" ".join(text.split()), line))
        index = len(self.d.steps) - 1
        if agent:
            self.s.step_agents[index] = agent
        self.ledger.map(line, self.d.heading, text, f"{self.where}.steps[{index + 1}]")
        return index

    def _member(self, name: str, line: int) -> None:
        add_team(self.d, [name], line)


def add_criterion(draft: StreamDraft, text: str, line: int, ledger: Ledger) -> None:
    """A criterion in words as a gate criterion of ``draft``: a comparison when the words
    measure something (``Response times < 2 seconds``), else a check the stream's steps
    report as true (``phase_1.plugin_directory_structure_matches == true``)."""
    from streams.gates import GateSyntaxError, parse_criterion
    from streams.markdown._criteria import metric_namespace

    where = f"streams[{draft.id}].gate"
    found = translate(text, draft.title)
    if found.expr is not None:
        draft.criteria.append(Sourced(found.expr, line, found.note))
        ledger.map(line, draft.heading, text, where)
        return
    words = [w for w in ascii_words(text) if w not in {"the", "a", "an", "is", "are", "all"}][:6]
    namespace = metric_namespace(draft.title) or "check"
    expr = f"{namespace}.{'_'.join(words)} == true"
    try:
        parse_criterion(expr)
    except GateSyntaxError:
        ledger.skip(line, draft.heading, text, found.note)
        return
    draft.criteria.append(Sourced(expr, line, "a check: report it true when done"))
    ledger.map(line, draft.heading, text, f"{where} (a check to report as true)")


def read_stream(stream: GenericStream, ledger: Ledger, known: set[str]) -> dict[str, str]:
    """Fill ``stream``'s draft from its lines; the roles its team list gave, by agent."""
    reader = _StreamReader(stream, ledger, known)
    reader.read()
    stream.draft.dependencies = stream.draft.dependencies or (
        Sourced("; ".join(d.value for d in reader.task_deps), reader.task_deps[0].line)
        if reader.task_deps
        else None
    )
    if reader.task_deps and stream.draft.dependencies is not None:
        joined = "; ".join(d.value for d in reader.task_deps)
        if joined not in stream.draft.dependencies.value:
            stream.draft.dependencies = Sourced(
                f"{stream.draft.dependencies.value}; {joined}", stream.draft.dependencies.line
            )
    return reader.roles
