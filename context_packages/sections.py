"""The material of an agent's context package: its sections, gathered from the plan.

Each section has a title, a Markdown body and a cut priority. When a package is over its
token limit, whole sections are cut, lowest priority first (:class:`CutPriority`)::

    1 PLAN_OVERVIEW      Plan Overview             the plan's summary and confidence bar
    2 TEAM               Team                      teammates' names and roles per stream
    3 STREAMS            Streams Served            goals: state, strategy, timeline, risk
    4 DEPENDENCIES       Dependencies              other agents' steps it waits on, and who
                                                   runs them; streams that must succeed first
    5 SUCCESS_CRITERIA   Success Criteria          each stream's gate and mandatory evidence
    6 ROLLBACK           Your Rollback Steps       the rollback steps this agent runs
    7 INSTRUCTIONS       Coordination Instructions report to the coordinator, scope, evidence
    8 REQUIRED           Role and Scope, Your Steps   never cut

The header (target, limit, size) is rendered with the package and never cut either.

Isolation: only this agent's own steps appear with their actions and parameters (secrets
masked). Of other agents the package names only teammates and their roles, and the ids of
the steps this agent waits on with who runs them; never their actions or command lines.
All user text is flattened to one line behind a label, so it cannot start a heading.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from foundation.secrets import mask_secrets
from streams.durations import format_duration
from streams.model import AgentSpec, Plan, StepSpec, StreamSpec, UndoSpec
from streams.validation import effective_needs

__all__ = ["CutPriority", "PackageHeader", "Section", "gather_sections", "package_header"]


class CutPriority(enum.IntEnum):
    """How long a section survives cutting: lower values are cut first; REQUIRED never."""

    PLAN_OVERVIEW = 1
    TEAM = 2
    STREAMS = 3
    DEPENDENCIES = 4
    SUCCESS_CRITERIA = 5
    ROLLBACK = 6
    INSTRUCTIONS = 7
    REQUIRED = 8


@dataclass(frozen=True, slots=True)
class Section:
    """One ``## title`` section of a package: its Markdown body and cut priority."""

    title: str
    body: str
    priority: CutPriority

    @property
    def required(self) -> bool:
        return self.priority is CutPriority.REQUIRED

    def markdown(self) -> str:
        return f"## {self.title}\n\n{self.body}"


@dataclass(frozen=True, slots=True)
class PackageHeader:
    """What the header names besides the sizes: the agent, its role and the plan."""

    agent: str
    role: str | None
    plan: str
    plan_title: str | None


def _line(text: str) -> str:
    """User text on one line: newlines and runs of blanks become one space."""
    return re.sub(r"\s+", " ", text).strip()


def _code(text: str) -> str:
    """``text`` as inline code, fenced so that backticks inside cannot end it."""
    text = _line(text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def _params(params: dict[str, Any]) -> str:
    # Sorted keys: the package (and its hash) does not depend on the order the file used.
    return _code(json.dumps(mask_secrets(params), sort_keys=True, ensure_ascii=False))


def _action(action: str, params: dict[str, Any]) -> str:
    return f"{_code(action)} with {_params(params)}" if params else _code(action)


def package_header(plan: Plan, agent: str) -> PackageHeader:
    spec = plan.agents[agent]
    return PackageHeader(agent, spec.role, plan.plan, plan.title)


class _Material:
    """The facts about one agent that its sections are written from."""

    def __init__(self, plan: Plan, agent: str) -> None:
        self.plan = plan
        self.agent = agent
        self.spec: AgentSpec = plan.agents[agent]
        self.served = [
            s
            for s in plan.streams
            if agent in s.team or any(step.agent == agent for step in s.steps)
        ]

    def own(self, steps: Sequence[StepSpec]) -> list[StepSpec]:
        return [step for step in steps if step.agent == self.agent]

    def role(self, name: str) -> str:
        spec = self.plan.agents.get(name)
        return _line(spec.role) if spec is not None and spec.role else "role not stated"

    # --- sections, in reading order ---------------------------------------------------

    def overview(self) -> Section | None:
        lines = []
        if self.plan.summary:
            lines.append(f"**Summary**: {_line(self.plan.summary)}")
        if self.plan.min_confidence is not None:
            lines.append(
                f"**Minimum Confidence**: {_percent(self.plan.min_confidence)} "
                "of weighted gate criteria across the plan"
            )
        if not lines:
            return None
        lines.append(
            f"**Your Part**: {len(self.served)} of the plan's {len(self.plan.streams)} streams"
        )
        return Section("Plan Overview", "\n".join(lines), CutPriority.PLAN_OVERVIEW)

    def role_and_scope(self) -> Section:
        caps = self.plan.caps.get(self.spec.resource_class)
        cls = self.spec.resource_class
        cap = f"no cap on {cls} steps" if caps is None else f"at most {caps} {cls} steps at once"
        scope = (
            "you may run only these actions: " + ", ".join(_code(a) for a in self.spec.can)
            if self.spec.can
            else "you carry out the instructions of your own steps, and nothing else"
        )
        lines = [
            f"**Agent**: {self.agent}",
            f"**Role**: {self.role(self.agent)}",
            f"**Scope**: {scope}",
            f"**Resource Class**: {cls} ({cap}, across all agents)",
            "**Streams Served**: "
            + (", ".join(s.id for s in self.served) if self.served else "none"),
        ]
        files = self.file_scope()
        if files:
            lines.append(f"**Files**: {files}")
        return Section("Role and Scope", "\n".join(lines), CutPriority.REQUIRED)

    def file_scope(self) -> str:
        """Where this agent's ``file.*`` calls may reach ("" without such actions): the
        run's working directory, and each root the plan declares with the name a call
        gives as ``root``."""
        if not any(action.startswith("file.") for action in self.spec.can):
            return ""
        where = "paths relative to the run's working directory"
        roots = self.plan.files.roots if self.plan.files is not None else {}
        if roots:
            named = ", ".join(f"{_code(name)} ({_code(path)})" for name, path in roots.items())
            where += f"; or, with `root: NAME`, relative to a declared root: {named}"
        return where + "; no `..`, no absolute paths, no symlinks out"

    def own_instructions(self) -> Section | None:
        """The agent's own instructions (an agents_from definition's Markdown body)."""
        text = (self.spec.instructions or "").strip()
        return Section("Your Instructions", text, CutPriority.INSTRUCTIONS) if text else None

    def streams(self) -> Section | None:
        blocks = []
        for stream in self.served:
            lines = [f"### {_stream_heading(stream)}"]
            facts = [f"**Priority**: {stream.priority}"]
            if stream.group:
                facts.append(f"**Group**: {_line(stream.group)}")
            if stream.methodology:
                facts.append(f"**Methodology**: {_line(stream.methodology)}")
            lines.append("- " + " | ".join(facts))
            numbers = []
            if stream.timeline is not None:
                numbers.append(
                    f"**Timeline**: {format_duration(stream.timeline.expected_s)} "
                    f"expected, {format_duration(stream.timeline.limit_s)} limit"
                )
            if stream.success_probability is not None:
                numbers.append(f"**Success Probability**: {_percent(stream.success_probability)}")
            if stream.risk is not None:
                numbers.append(f"**Risk**: {_percent(stream.risk)}")
            if numbers:
                lines.append("- " + " | ".join(numbers))
            for label, text in (
                ("Current State", stream.current_state),
                ("Strategy", stream.strategy),
                ("Expected Improvement", stream.expected_improvement),
            ):
                if text:
                    lines.append(f"- **{label}**: {_line(text)}")
            blocks.append("\n".join(lines))
        if not blocks:
            return None
        return Section("Streams Served", "\n\n".join(blocks), CutPriority.STREAMS)

    def steps(self) -> Section:
        blocks = []
        for stream in self.served:
            own = self.own(stream.steps)
            if own:
                blocks.append(self._step_block(stream, stream.steps, own))
        body = "\n\n".join(blocks) if blocks else "You run no steps in this plan."
        return Section("Your Steps", body, CutPriority.REQUIRED)

    def dependencies(self) -> Section | None:
        waits = []
        for stream in self.served:
            lists = [stream.steps, stream.rollback.steps if stream.rollback else []]
            for steps in lists:
                owner = {step.id: step.agent for step in steps}
                needs = effective_needs(steps)
                for step in self.own(steps):
                    for need in needs[step.id]:
                        runner = owner.get(need)
                        if runner is not None and runner != self.agent:
                            waits.append(
                                f"- {_code(need)} ({stream.id}), run by {runner}: "
                                f"before your {_code(step.id)}"
                            )
        starts = [
            f"- {stream.id} starts after: {', '.join(stream.depends_on)}"
            for stream in self.served
            if stream.depends_on
        ]
        parts = []
        if waits:
            parts.append("### Steps You Wait On\n" + "\n".join(waits))
        if starts:
            parts.append("### Streams That Must Succeed First\n" + "\n".join(starts))
        if not parts:
            return None
        return Section("Dependencies", "\n\n".join(parts), CutPriority.DEPENDENCIES)

    def team(self) -> Section | None:
        blocks = []
        for stream in self.served:
            mates = [m for m in stream.team if m != self.agent]
            if mates:
                lines = [f"### {stream.id}"]
                lines.extend(f"- {m}: {self.role(m)}" for m in mates)
                blocks.append("\n".join(lines))
        if not blocks:
            return None
        return Section("Team", "\n\n".join(blocks), CutPriority.TEAM)

    def success_criteria(self) -> Section | None:
        blocks = []
        for stream in self.served:
            lines = []
            gate = stream.gate
            if gate is not None and gate.criteria:
                verified = "; only daemon-verified evidence counts" if gate.require_verified else ""
                lines.append(
                    f"- **Gate**: weighted share of criteria met >= "
                    f"{_percent(gate.threshold)}{verified}"
                )
                for criterion in gate.criteria:
                    if isinstance(criterion, str):
                        lines.append(f"  - {_code(criterion)}")
                    else:
                        lines.append(f"  - {_code(criterion.expr)} (weight {criterion.weight:g})")
            if stream.evidence:
                providers = {ev: step.id for step in self.own(stream.steps) for ev in step.evidence}
                lines.append("- **Mandatory Evidence**:")
                for requirement in stream.evidence:
                    notes = []
                    if requirement.verified:
                        notes.append("verified by the daemon")
                    if requirement.id in providers:
                        notes.append(f"from your step {_code(providers[requirement.id])}")
                    text = f": {_line(requirement.description)}" if requirement.description else ""
                    extra = f" ({'; '.join(notes)})" if notes else ""
                    lines.append(f"  - {_code(requirement.id)}{text}{extra}")
            if lines:
                blocks.append("\n".join([f"### {stream.id}", *lines]))
        if not blocks:
            return None
        return Section("Success Criteria", "\n\n".join(blocks), CutPriority.SUCCESS_CRITERIA)

    def rollback(self) -> Section | None:
        blocks = []
        for stream in self.served:
            if stream.rollback is None:
                continue
            own = self.own(stream.rollback.steps)
            if not own:
                continue
            block = self._step_block(stream, stream.rollback.steps, own)
            if stream.rollback.budget is not None:
                head, _, rest = block.partition("\n")
                block = (
                    f"{head}\n**Recovery Budget**: "
                    f"{format_duration(stream.rollback.budget)}\n{rest}"
                )
            blocks.append(block)
        if not blocks:
            return None
        intro = "Run these only when the orchestrator rolls a failed stream back."
        return Section("Your Rollback Steps", "\n\n".join([intro, *blocks]), CutPriority.ROLLBACK)

    def instructions(self) -> Section:
        actions = ", ".join(_code(a) for a in self.spec.can)
        lines = [
            "- **Communication Protocol**: Return every result to the orchestrator "
            "(the coordinator); it passes on what other agents need.",
            f"- **Scope Boundaries**: Run only your own steps, only with your allowed actions "
            f"({actions}); leave other agents' steps to them.",
            "- **Locks**: Touch a shared resource only in a step that holds its lock.",
            "- **Evidence Requirements**: Provide concrete proof for each evidence item your "
            "steps name, naming the item by its id; proof that names no item, or another, "
            "counts for none, and a step without its evidence does not count as done.",
        ]
        return Section("Coordination Instructions", "\n".join(lines), CutPriority.INSTRUCTIONS)

    # --- helpers ------------------------------------------------------------------------

    def _step_block(
        self, stream: StreamSpec, steps: Sequence[StepSpec], own: Sequence[StepSpec]
    ) -> str:
        needs = effective_needs(steps)
        evidence = {e.id: e for e in stream.evidence}
        lines = [f"### {_stream_heading(stream)}"]
        for number, step in enumerate(own, start=1):
            lines.extend(self._step_lines(number, step, needs[step.id], evidence))
        return "\n".join(lines)

    def _step_lines(
        self, number: int, step: StepSpec, needs: Sequence[str], evidence: dict[str, Any]
    ) -> Iterator[str]:
        title = f": {_line(step.title)}" if step.title else ""
        yield f"{number}. {_code(step.id)}{title}"
        if step.instruction is not None:
            yield f"   - **Instruction**: {_line(step.instruction)}"
        else:
            yield f"   - **Action**: {_action(step.action or '', step.with_)}"
        if needs:
            yield f"   - **Needs**: {', '.join(_code(n) for n in needs)}"
        yield f"   - **Locks**: {', '.join(step.locks) if step.locks else 'none'}"
        yield f"   - **Limits**: {self._limits(step)}"
        for ev in step.evidence:
            requirement = evidence.get(ev)
            text = (
                f": {_line(requirement.description)}"
                if requirement is not None and requirement.description
                else ""
            )
            verified = (
                " (verified by the daemon)"
                if requirement is not None and requirement.verified
                else ""
            )
            yield f"   - **Evidence**: {_code(ev)}{text}{verified}"
        if step.undo is not None:
            yield f"   - **Undo**: {_undo(step.undo)}"
        if step.idempotent:
            yield "   - **Idempotent**: safe to run again after a crash"

    def _limits(self, step: StepSpec) -> str:
        defaults = self.plan.defaults
        timeout = step.timeout if step.timeout is not None else defaults.timeout
        retries = step.retries if step.retries is not None else defaults.retries
        lock_timeout = step.lock_timeout if step.lock_timeout is not None else defaults.lock_timeout
        parts = [f"timeout {format_duration(timeout)} per attempt"]
        if retries:
            parts.append(
                f"{retries} retr{'y' if retries == 1 else 'ies'} "
                f"(backoff from {format_duration(defaults.backoff)})"
            )
        else:
            parts.append("no retries")
        if step.locks:
            parts.append(
                "lock wait unbounded"
                if lock_timeout is None
                else f"lock wait up to {format_duration(lock_timeout)}"
            )
        return ", ".join(parts)


def _undo(undo: UndoSpec) -> str:
    text = _action(undo.action, undo.with_)
    return f"{text}, timeout {format_duration(undo.timeout)}" if undo.timeout is not None else text


def _stream_heading(stream: StreamSpec) -> str:
    return f"{stream.id}: {_line(stream.title)}" if stream.title else stream.id


def gather_sections(plan: Plan, agent: str) -> tuple[Section, ...]:
    """Every section of ``agent``'s package in reading order, before any cut.

    Sections with nothing to say (no teammates, no rollback steps, ...) are left out here,
    so they never appear as cut. ``agent`` must be a key of ``plan.agents``.
    """
    material = _Material(plan, agent)
    candidates = [
        material.overview(),
        material.role_and_scope(),
        material.own_instructions(),
        material.streams(),
        material.steps(),
        material.dependencies(),
        material.team(),
        material.success_criteria(),
        material.rollback(),
        material.instructions(),
    ]
    return tuple(section for section in candidates if section is not None)
