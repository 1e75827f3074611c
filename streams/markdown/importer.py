"""Importing a Markdown phase plan, as users write them, into a plan file.

A document with the seed's ``### N. NAME (X PRIORITY)`` focus areas is read as described
below; any other is read by :mod:`streams.markdown._generic` (``### Stream N: NAME``,
``## Phase N: NAME``, ``NAME Stream (Priority N):`` blocks, tables of streams, with
per-step agents, prerequisites, estimates and criteria). A context package is refused.

For the seed's family, :func:`import_markdown` reads the document the way its sections are
meant, whatever their order or exact titles (headings are matched by keywords; see
:mod:`streams.markdown._document`):

* ``### N. NAME (X PRIORITY)`` focus areas -> streams: id (slug of the name), title,
  priority, methodology, success probability, risk, timeline (``15-30 minutes`` ->
  ``15m..30m``), current state, strategy, expected improvement, dependencies, agent team and
  implementation sequence (sentence steps for the stream's lead);
* the resource allocation matrix -> ``caps`` and each agent's class and role;
* the parallel execution architecture -> each stream's ``group`` and gate threshold (and
  waits between blocks); its teams and timelines, and the decision matrix, are cross-checked;
* quantitative success criteria -> gate criteria in the gate grammar
  (:mod:`streams.markdown._criteria` documents how metric names are made);
* mandatory evidence -> evidence requirements; rollback procedures -> rollback steps and
  budget (``(2-minute recovery)`` -> ``2m``); resource locking -> ``resources``;
  the executive summary -> ``summary``.

In both, ``NAME Context Package (3,500 tokens)`` sets the token limit of that stream's
agents, ``.claude/agents`` definitions give agents their display names and roles, and no
agent gets a driver (`orchestrator validate` names each one to fill in). Mis-encoded text
(UTF-8 read as cp1252) is repaired first, run by run, so every line number in the report is
the line in the user's file. Whatever is not mapped is reported with its
lines, and what had to be assumed is reported too; the YAML repeats both in its header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath

import yaml

from foundation.errors import PlanInvalid, PlanProblem
from streams.agent_definitions import AgentDefinition
from streams.loader import load_plan_text
from streams.markdown._architecture import architecture, decision_table
from streams.markdown._document import Document, Kind, Section, parse
from streams.markdown._draft import (
    DEFAULT_CAPS,
    UNCLASSIFIED,
    UNCLASSIFIED_CAP,
    AgentDraft,
    PlanDraft,
    Sourced,
    StreamDraft,
)
from streams.markdown._emit import emit
from streams.markdown._focus import display_title, focus_area, resolve_dependencies
from streams.markdown._generic import find_streams
from streams.markdown._generic_plan import (
    all_lines,
    build_generic,
    concurrency,
    not_a_plan,
    token_limits,
    yaml_classes,
)
from streams.markdown._outline import outline
from streams.markdown._report import ImportReport, Ledger, ReportItem
from streams.markdown._sections import conflict, criteria, evidence, resources, rollback, summary
from streams.markdown._text import decode_cp1252, slugify
from streams.model import Plan
from streams.validation import find_cycle

__all__ = ["ImportReport", "ImportResult", "ReportItem", "decode_markdown", "import_markdown"]


@dataclass(frozen=True, slots=True)
class ImportResult:
    """The plan file's text, the report of what was mapped, not mapped and assumed, and the
    plan as :func:`streams.loader.load_plan_text` reads the text back."""

    yaml_text: str
    report: ImportReport
    plan: Plan
    # What `orchestrator validate` says of the plan: each agent that needs a driver.
    needs_driver: tuple[PlanProblem, ...] = ()

    def summary(self) -> str:
        """One line for people: what the plan holds and how much was not mapped or assumed."""
        streams = self.plan.streams
        criteria = sum(len(s.gate.criteria) for s in streams if s.gate)
        return (
            f"{len(streams)} streams, {len(self.plan.agents)} agents, "
            f"{self.plan.total_steps()} steps, {criteria} gate criteria, "
            f"{sum(len(s.evidence) for s in streams)} evidence requirements, "
            f"{sum(1 for s in streams if s.rollback)} rollbacks; "
            f"{len(self.report.unmapped)} not mapped, {len(self.report.assumptions)} assumed"
        )


def decode_markdown(data: bytes) -> tuple[str, str]:
    """The text of a Markdown file and the encoding it was read with: UTF-8 (a BOM
    dropped) when the bytes are UTF-8, else cp1252, where bytes cp1252 leaves undefined
    read as latin-1, so that any file can be imported and nothing is lost."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        # A document saved by a Windows tool in its ANSI code page rather than UTF-8.
        return decode_cp1252(data), "cp1252"


def import_markdown(
    text: str,
    source: str,
    *,
    definitions: Mapping[str, AgentDefinition] | None = None,
) -> ImportResult:
    """Import the Markdown phase plan ``text``; ``source`` names it in the report.

    ``definitions`` (``.claude/agents`` definitions by plan id, see
    :mod:`streams.agent_definitions`) give the agents they define a display name and role.
    No agent gets a driver: the plan names none, and `orchestrator validate` says, agent by
    agent, what to fill in. Raises :class:`~foundation.errors.PlanInvalid` when the
    document names no stream (listing the shapes looked for) or is not a plan at all. The
    YAML returned always loads and passes every check but the drivers; were it not to,
    that PlanInvalid (a bug here) is raised instead.
    """
    document = parse(text)
    refused = not_a_plan(source, document)
    if refused is not None:
        raise refused
    ledger = Ledger()
    definitions = definitions or {}
    if _seed_family(text, document):
        plan = _focus_areas(document, source, ledger)
    else:
        plan = _generic(text, source, document, ledger, set(definitions))
    lines = all_lines(text)
    for name, limit in token_limits(lines, plan, ledger).items():
        if name in plan.agents:
            plan.agents[name].token_limit = limit
    _definitions(plan, definitions, ledger)
    if document.unclosed_fence:
        ledger.assume(
            document.unclosed_fence,
            "",
            "```",
            "a code block never closed: read to the end of the file",
        )
    ledger.assume(
        0,
        "",
        "",
        "no agent has a driver: give each one `driver: {command: [...]}` "
        "(`orchestrator validate` lists them)",
    )
    _leftovers(document, ledger)
    report = ledger.report(source, document.repaired)
    yaml_text = emit(plan, report)
    loaded, needs = _load(yaml_text, f"{source} (imported)")
    return ImportResult(yaml_text, report, loaded, needs)


def _seed_family(text: str, document: Document) -> bool:
    """Whether the seed's reader takes the document: numbered focus areas
    (``### 1. NAME (HIGH PRIORITY)``), or unnumbered ones when no other family's stream
    shape is there (``### Backend Stream (HIGH PRIORITY)`` is a stream heading)."""
    focus = [s.focus for s in document.sections if s.kind is Kind.FOCUS_AREA and s.focus]
    if any(f.number is not None for f in focus):
        return True
    return bool(focus) and not find_streams(outline(text)[0], Ledger())


def _focus_areas(document: Document, source: str, ledger: Ledger) -> PlanDraft:
    """The seed's family: ``### 1. NAME (X PRIORITY)`` focus areas and the sections around."""
    plan = PlanDraft(slugify(PurePath(source).stem) or "imported-plan")
    taken: set[str] = set()
    for section in document.sections:
        if section.kind is Kind.FOCUS_AREA:
            plan.streams.append(focus_area(section, ledger, taken))
    every_line = [line.text for section in document.sections for line in section.lines]
    for stream in plan.streams:
        stream.title = display_title(stream.name, every_line)
    _sections(document, plan, ledger)
    for stream in plan.streams:
        resolve_dependencies(stream, plan.streams, ledger)
        _finish_stream(stream, ledger)
    _break_cycles(plan.streams, ledger)
    _agents(plan, ledger, has_matrix=any(s.kind is Kind.RESOURCES for s in document.sections))
    return plan


def _generic(
    text: str, source: str, document: Document, ledger: Ledger, known: set[str]
) -> PlanDraft:
    """Every other family (:mod:`streams.markdown._generic`)."""
    plan, streams, roles = build_generic(text, source, document, ledger, known)
    for stream in streams:
        stream.draft.step_agents = stream.step_agents
        _finish_stream(stream.draft, ledger)
    _break_cycles(plan.streams, ledger)
    found = yaml_classes(text, ledger) if not plan.caps else None
    if found is not None:
        plan.caps, plan.caps_line = dict(found[0]), found[2]
        for name, cls in found[1].items():
            plan.agents.setdefault(name, AgentDraft(cls, roles.get(name, ""), found[2]))
    if not plan.caps:
        limit = concurrency(all_lines(text))
        if limit is not None:
            plan.caps, plan.caps_line = {GENERAL: limit.value}, limit.line
            ledger.map(limit.line, "", "", f"caps.{GENERAL}: {limit.value}")
        else:
            cap = max(2, len(plan.streams))
            plan.caps = {GENERAL: cap}
            ledger.assume(
                0, "", "", f"no concurrency limit or resource classes: class {GENERAL!r}, "
                f"at most {cap} agents at once (one per stream)",
            )  # fmt: skip
    cls = next(iter(plan.caps)) if len(plan.caps) == 1 else UNCLASSIFIED
    for draft in plan.streams:
        for name in draft.team:
            if name not in plan.agents:
                plan.agents[name] = AgentDraft(cls, roles.get(name, ""), 0)
                if cls == UNCLASSIFIED:
                    plan.caps.setdefault(UNCLASSIFIED, UNCLASSIFIED_CAP)
    return plan


def _definitions(
    plan: PlanDraft, definitions: Mapping[str, AgentDefinition], ledger: Ledger
) -> None:
    for name, agent in plan.agents.items():
        found = definitions.get(name)
        if found is None:
            continue
        agent.display_name = found.name
        agent.role = agent.role or found.description
        agent.definition, agent.model, agent.tools = found.path, found.model, found.tools
        ledger.assume(0, "", "", f"agent {name!r}: name and role from {found.path}")


def _load(yaml_text: str, label: str) -> tuple[Plan, tuple[PlanProblem, ...]]:
    """The plan the YAML holds and the problems of its unset drivers; any other problem
    is raised."""
    try:
        loaded, _ = load_plan_text(yaml_text, label)
    except PlanInvalid as exc:
        needs = tuple(p for p in exc.problems if _NO_DRIVER.search(p.reason))
        rest = [p for p in exc.problems if p not in needs]
        if rest or not needs:
            raise
        return Plan.model_validate(yaml.safe_load(yaml_text)), needs
    return loaded, ()


# The one resource class of a plan whose document names none.
GENERAL = "agents"
_NO_DRIVER = re.compile(r"has no driver to perform|no `can` actions and no driver")


def _sections(document: Document, plan: PlanDraft, ledger: Ledger) -> None:
    # Cross-checks (decision matrix, architecture) see the focus areas' own values first;
    # the order of the sections in the file does not matter.
    order = (
        Kind.TITLE, Kind.SUMMARY, Kind.DECISION_TABLE, Kind.ARCHITECTURE, Kind.RESOURCES,
        Kind.CONFLICT, Kind.CRITERIA, Kind.EVIDENCE, Kind.ROLLBACK,
    )  # fmt: skip
    for kind in order:
        for section in document.sections:
            if section.kind is kind:
                _section(section, plan, ledger)


def _section(section: Section, plan: PlanDraft, ledger: Ledger) -> None:
    streams = plan.streams
    match section.kind:
        case Kind.TITLE:
            if plan.title is None and slugify(section.title):
                plan.title = Sourced(section.title, section.line)
                plan.plan_id = slugify(section.title)
                ledger.map(section.line, section.title, section.title, "plan, title")
        case Kind.SUMMARY:
            summary(section, plan, ledger)
        case Kind.DECISION_TABLE:
            decision_table(section, streams, ledger)
        case Kind.ARCHITECTURE:
            architecture(section, streams, ledger)
        case Kind.RESOURCES:
            resources(section, plan, ledger)
        case Kind.CONFLICT:
            conflict(section, plan, ledger)
        case Kind.CRITERIA:
            criteria(section, streams, ledger)
        case Kind.EVIDENCE:
            evidence(section, streams, ledger)
        case Kind.ROLLBACK:
            rollback(section, streams, ledger)
        case _:
            pass


def _finish_stream(stream: StreamDraft, ledger: Ledger) -> None:
    """Fill what a valid stream needs and the document left out, saying so."""
    where, heading = stream.line, stream.heading
    if not stream.team:
        stream.team = [f"{stream.id}-agent"]
        stream.team_line = 0
        ledger.assume(
            where, heading, "", f"no Agent Team: one placeholder agent {stream.team[0]!r}"
        )
    if stream.lead is None:
        stream.lead = Sourced(stream.team[0], stream.team_line, "first of the team")
        ledger.assume(
            stream.team_line or where,
            heading,
            "",
            f"lead {stream.team[0]!r} (first of the team) performs the sentence steps",
        )
    elif stream.lead.value not in stream.team:
        stream.team.insert(0, stream.lead.value)
        ledger.assume(stream.lead.line, heading, "", "the lead joins the team")
    if not stream.steps:
        sentence = f"Carry out {stream.title}" + (
            f": {stream.fields['strategy'].value}" if "strategy" in stream.fields else ""
        )
        stream.steps.append(Sourced(sentence, 0, "placeholder: no implementation sequence"))
        ledger.assume(where, heading, "", "no Implementation Sequence: one placeholder step")
    if stream.evidence:
        last = stream.steps[-1]
        ledger.assume(
            last.line or where,
            heading,
            last.value,
            f"the last step (step-{len(stream.steps)}) declares all of the stream's evidence, "
            "which counts only from a step that declares it: move each to the step that "
            "produces it",
        )
    if stream.rollback_steps:
        if stream.rollback_budget is None and stream.rollback_time is not None:
            stream.rollback_budget = stream.rollback_time
            ledger.map(
                stream.rollback_time.line,
                heading,
                "Rollback Time",
                f"streams[{stream.id}].rollback.budget",
            )
        elif (
            stream.rollback_time is not None
            and stream.rollback_budget is not None
            and stream.rollback_time.value != stream.rollback_budget.value
        ):
            ledger.skip(
                stream.rollback_time.line,
                heading,
                "Rollback Time",
                f"differs from the rollback procedure's {stream.rollback_budget.value} "
                f"(line {stream.rollback_budget.line}); kept that",
            )
    elif stream.rollback_time is not None:
        ledger.skip(
            stream.rollback_time.line,
            heading,
            "Rollback Time",
            "a rollback time but no rollback procedure: no rollback",
        )
    stream.rollback_budget = stream.rollback_budget if stream.rollback_steps else None
    if stream.threshold is not None and not stream.criteria:
        ledger.skip(
            stream.threshold.line,
            heading,
            "Success Gate",
            f"a gate threshold but no criterion for {stream.id!r}: no gate "
            "(one without criteria could never pass)",
        )
        stream.threshold = None
    elif stream.criteria and stream.threshold is None:
        ledger.assume(
            where,
            heading,
            "",
            "no success gate threshold: every criterion must be met (threshold 1.0)",
        )


def _break_cycles(streams: list[StreamDraft], ledger: Ledger) -> None:
    """A document can say that streams wait for each other in a circle; a plan cannot.
    Drop the wait that closes each circle, and say so."""
    by_id = {s.id: s for s in streams}
    while cycle := find_cycle({s.id: [d.value for d in s.depends_on] for s in streams}):
        waiting, waited_for = by_id[cycle[-2]], cycle[-1]
        line = next(d.line for d in waiting.depends_on if d.value == waited_for)
        waiting.depends_on = [d for d in waiting.depends_on if d.value != waited_for]
        ledger.skip(
            line,
            waiting.heading,
            "",
            f"{waiting.id!r} waiting for {waited_for!r} closes a circle "
            f"({' -> '.join(cycle)}): that wait is left out",
        )


def _agents(plan: PlanDraft, ledger: Ledger, *, has_matrix: bool) -> None:
    if not plan.caps:
        plan.caps = dict(DEFAULT_CAPS)
        plan.caps_line = 0
        reason = (
            "no resource allocation matrix"
            if not has_matrix
            else "no class read from the resource allocation matrix"
        )
        ledger.assume(0, "", "", f"{reason}: default caps {DEFAULT_CAPS}")
    for stream in plan.streams:
        for name in stream.team:
            if name in plan.agents:
                continue
            plan.agents[name] = AgentDraft(UNCLASSIFIED, "", 0)
            plan.caps.setdefault(UNCLASSIFIED, UNCLASSIFIED_CAP)
            ledger.assume(
                stream.team_line,
                stream.heading,
                name,
                f"not in the resource allocation matrix: class {UNCLASSIFIED!r} "
                f"(cap {UNCLASSIFIED_CAP}) until you classify it",
            )


_RULE = re.compile(r"^\s*([-*_])(?:\s*\1){2,}\s*$")


def _leftovers(document: Document, ledger: Ledger) -> None:
    """Report each run of lines no mapper used, with its section's reason."""
    for section in document.sections:
        reason = _reason(section)
        run: list[tuple[int, str]] = []
        for line in (*section.lines, None):
            unused = (
                line is not None
                and line.text.strip()
                and not _RULE.match(line.text)
                and line.number not in ledger.used
            )
            if unused and line is not None:
                run.append((line.number, line.text.strip()))
            elif run and (line is None or line.number in ledger.used or line.heading):
                ledger.skip(
                    run[0][0],
                    section.title or "(before the first heading)",
                    run[0][1],
                    reason,
                    end_line=run[-1][0],
                )
                run = []


def _reason(section: Section) -> str:
    if section.kind is Kind.IGNORED:
        return section.reason
    if section.kind in {Kind.UNKNOWN, Kind.PREAMBLE, Kind.TITLE, Kind.FOCUS_CONTAINER}:
        return "no plan field for this section"
    if section.kind is Kind.CONFLICT:
        return "the scheduler's caps and locks do this: nothing to configure"
    return f"not understood in a {section.kind.value} section"
