"""Cross-reference checks of a parsed plan, each problem at its file position.

Checked before anything runs: unknown agents, resources and classes; agents outside their
stream's team; actions outside an agent's ``can`` list (its scope) or unknown to the
registry; each step's ``with:`` against its action's parameters; duplicate ids; ``needs``
and ``depends_on`` that name nothing or form a cycle (the cycle is printed).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from foundation.errors import PlanProblem
from streams._positions import Loc, Positions, describe_error
from streams.catalog import ActionCatalog
from streams.file_roots import resolve_roots
from streams.gates import check_gate_expressions
from streams.model import Plan, StepSpec, StreamSpec

__all__ = ["check_plan", "effective_needs", "find_cycle"]


def effective_needs(steps: Sequence[StepSpec]) -> dict[str, tuple[str, ...]]:
    """Each step's ``needs``, with the default (the previous step) filled in."""
    needs: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for step in steps:
        if step.needs is not None:
            needs[step.id] = tuple(step.needs)
        else:
            needs[step.id] = (previous,) if previous is not None else ()
        previous = step.id
    return needs


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as ``[a, b, ..., a]`` if the graph ``node -> deps`` has one."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in edges:
        if state.get(root):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(edges.get(root, ())))]
        state[root] = 1
        path.append(root)
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in edges:
                    continue
                if state.get(child) == 1:
                    return [*path[path.index(child) :], child]
                if not state.get(child):
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(edges.get(child, ()))))
                    break
            else:
                state[node] = 2
                path.pop()
                stack.pop()
    return None


def _sentence_steps(plan: Plan, agent: str) -> int:
    """How many instruction steps (and rollback steps) of ``plan`` are for ``agent``."""
    return sum(
        1
        for stream in plan.streams
        for step in (*stream.steps, *(stream.rollback.steps if stream.rollback else ()))
        if step.agent == agent and step.instruction is not None
    )


def _suggest(name: str, known: Iterable[str]) -> str:
    import difflib  # only a plan with a problem needs it

    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return hint + f"known: {', '.join(known) if known else '(none)'}"


def _cycle_entry(
    cycle: Sequence[str], written: Mapping[str, Sequence[tuple[Loc, Sequence[str] | None]]]
) -> Loc:
    """Where the file spells out an edge of ``cycle``: the first ``needs``/``depends_on``
    entry naming the next node (a default need, the previous step, is not written)."""
    for node, after in itertools.pairwise(cycle):
        for base, entries in written.get(node, ()):
            if entries is not None and after in entries:
                return (*base, list(entries).index(after))
    return written[cycle[0]][0][0]


class _Checker:
    def __init__(
        self, plan: Plan, pos: Positions, label: str, registry: ActionCatalog | None
    ) -> None:
        self.plan = plan
        self.pos = pos
        self.label = label
        self.registry = registry
        self.problems: list[PlanProblem] = []

    def add(self, loc: Loc, reason: str, fix: str = "", *, key: bool = False) -> None:
        line, column = self.pos.at(loc, key=key)
        self.problems.append(PlanProblem(self.label, line, column, reason, fix))

    def _file_roots(self) -> None:
        """Declared roots must be usable, checked against the plan file's folder (the run's
        working directory); a plan given as text only is checked when it runs."""
        files = self.plan.files
        folder = Path(self.label).parent
        if files is None or not files.roots or not Path(self.label).is_file():
            return
        for name, reason in resolve_roots(folder, files.roots)[1].items():
            self.add(
                ("files", "roots", name),
                f"file root {name!r}: {reason}",
                "give an existing folder outside the plan's folder, not through a symlink",
            )

    def run(self) -> list[PlanProblem]:
        plan = self.plan
        self._file_roots()
        for name, agent in plan.agents.items():
            if not agent.can and agent.driver is None:
                sentences = _sentence_steps(plan, name)
                self.add(
                    ("agents", name),
                    f"agent {name!r} has no driver to perform its {sentences} sentence step(s)"
                    if sentences
                    else f"agent {name!r} can do nothing: no `can` actions and no driver",
                    f"under agents.{name}, give it `driver: {{command: [PROGRAM, ...]}}`, the "
                    "program that performs its steps (docs/agent-protocol.md)"
                    if sentences
                    else "list its actions in `can`, or give it a `driver`",
                )
            if agent.resource_class not in plan.caps:
                self.add(
                    ("agents", name, "class"),
                    f"agent {name!r}: unknown resource class {agent.resource_class!r}",
                    _suggest(agent.resource_class, plan.caps),
                )
            for index, action in enumerate(agent.can):
                if self.registry is not None and action not in self.registry:
                    self.add(
                        ("agents", name, "can", index),
                        f"agent {name!r}: unknown action {action!r}",
                        _suggest(action, self.registry),
                    )
        seen_resources: set[str] = set()
        for index, resource in enumerate(plan.resources):
            if resource in seen_resources:
                self.add(
                    ("resources", index),
                    f"duplicate resource {resource!r}",
                    "list each resource once",
                )
            seen_resources.add(resource)
        stream_ids: dict[str, int] = {}
        for index, stream in enumerate(plan.streams):
            if stream.id in stream_ids:
                self.add(
                    ("streams", index, "id"),
                    f"duplicate stream id {stream.id!r} "
                    f"(first at streams[{stream_ids[stream.id]}])",
                    "give it another id",
                )
            else:
                stream_ids[stream.id] = index
        for index, stream in enumerate(plan.streams):
            self._stream(index, stream, stream_ids)
        # Self-dependencies are reported on their own above, not again as a cycle.
        cycle = find_cycle({s.id: [d for d in s.depends_on if d != s.id] for s in plan.streams})
        if cycle is not None:
            written: dict[str, list[tuple[Loc, Sequence[str] | None]]] = {}
            for index, stream in enumerate(plan.streams):
                written.setdefault(stream.id, []).append(
                    (("streams", index, "depends_on"), stream.depends_on)
                )
            self.add(
                _cycle_entry(cycle, written),
                "dependency cycle between streams: " + " -> ".join(cycle),
                "remove one of these depends_on entries",
            )
        return self.problems

    def _stream(self, index: int, stream: StreamSpec, stream_ids: Mapping[str, int]) -> None:
        base: Loc = ("streams", index)
        for i, member in enumerate(stream.team):
            if member not in self.plan.agents:
                self.add(
                    (*base, "team", i),
                    f"stream {stream.id!r}: unknown agent {member!r}",
                    _suggest(member, self.plan.agents),
                )
        for i, dep in enumerate(stream.depends_on):
            if dep == stream.id:
                self.add(
                    (*base, "depends_on", i), f"stream {stream.id!r} depends on itself", "remove it"
                )
            elif dep not in stream_ids:
                self.add(
                    (*base, "depends_on", i),
                    f"stream {stream.id!r}: depends on unknown stream {dep!r}",
                    _suggest(dep, stream_ids),
                )
        evidence_ids: set[str] = set()
        for i, requirement in enumerate(stream.evidence):
            if requirement.id in evidence_ids:
                self.add(
                    (*base, "evidence", i, "id"),
                    f"stream {stream.id!r}: duplicate evidence id {requirement.id!r}",
                    "give each its own id",
                )
            evidence_ids.add(requirement.id)
        step_ids: set[str] = set()
        self._steps(stream, (*base, "steps"), stream.steps, step_ids, evidence_ids)
        if stream.rollback is not None:
            self._steps(
                stream, (*base, "rollback", "steps"), stream.rollback.steps, step_ids, evidence_ids
            )
        if stream.gate is not None:
            for problem in check_gate_expressions(stream.gate):
                criterion = stream.gate.criteria[problem.criterion]
                loc: Loc = (*base, "gate", "criteria", problem.criterion)
                if not isinstance(criterion, str):
                    loc = (*loc, "expr")
                where = f" at column {problem.column} of the expression" if problem.column else ""
                self.add(
                    loc,
                    f"stream {stream.id!r}: gate criterion {problem.criterion + 1}{where}: "
                    f"{problem.message}",
                    "write `metric OP value`, e.g. 'db.response_ms.p50 < 100' "
                    "(see streams/gates.py for the grammar)",
                )

    def _steps(
        self,
        stream: StreamSpec,
        base: Loc,
        steps: Sequence[StepSpec],
        step_ids: set[str],
        evidence_ids: set[str],
    ) -> None:
        local: dict[str, int] = {}
        for i, step in enumerate(steps):
            loc: Loc = (*base, i)
            if step.id in step_ids:
                self.add(
                    (*loc, "id"),
                    f"stream {stream.id!r}: duplicate step id {step.id!r}",
                    "step ids must be unique within a stream, rollback included",
                )
            step_ids.add(step.id)
            local[step.id] = i
            self._step(stream, loc, step, evidence_ids)
        needs = effective_needs(steps)
        for i, step in enumerate(steps):
            for j, need in enumerate(step.needs or ()):
                if need == step.id:
                    self.add((*base, i, "needs", j), f"step {step.id!r} needs itself", "remove it")
                elif need not in local:
                    self.add(
                        (*base, i, "needs", j),
                        f"step {step.id!r} needs unknown step {need!r}",
                        _suggest(need, local),
                    )
        # Self-needs are reported on their own above, not again as a cycle.
        cycle = find_cycle({k: [d for d in v if d != k] for k, v in needs.items()})
        if cycle is not None:
            written: dict[str, list[tuple[Loc, Sequence[str] | None]]] = {}
            for i, step in enumerate(steps):
                written.setdefault(step.id, []).append(((*base, i, "needs"), step.needs))
            self.add(
                _cycle_entry(cycle, written),
                f"stream {stream.id!r}: cycle in needs: " + " -> ".join(cycle),
                "remove one of these needs",
            )

    def _step(self, stream: StreamSpec, loc: Loc, step: StepSpec, evidence: set[str]) -> None:
        agent = self.plan.agents.get(step.agent)
        if agent is None:
            self.add(
                (*loc, "agent"),
                f"step {step.id!r}: unknown agent {step.agent!r}",
                _suggest(step.agent, self.plan.agents),
            )
        elif step.agent not in stream.team:
            self.add(
                (*loc, "agent"),
                f"step {step.id!r}: agent {step.agent!r} is not in stream {stream.id!r}'s team",
                f"add it to the team ({', '.join(stream.team)}) or pick a team member",
            )
        if step.action is not None and step.instruction is not None:
            self.add(
                (*loc, "instruction"),
                f"step {step.id!r} has both an action and an instruction",
                "keep one: an action with `with:`, or a sentence",
            )
        elif step.instruction is not None:
            if agent is not None and agent.driver is None and agent.can:
                # (An agent with neither is reported once, at the agent.)
                self.add(
                    (*loc, "instruction"),
                    f"step {step.id!r} is a sentence, but agent "
                    f"{step.agent!r} has no external driver to read it",
                    "give the agent `driver: {command: [...]}` or write an action",
                )
        elif step.action is None:
            self.add(
                loc,
                f"step {step.id!r} has neither an action nor an instruction",
                "add `action:` (and `with:`) or `instruction: <sentence>`",
            )
        else:
            self._action(loc, step.id, step.agent, step.action, step.with_)
        if step.undo is not None:
            self._action((*loc, "undo"), step.id, step.agent, step.undo.action, step.undo.with_)
        seen: set[str] = set()
        for i, lock in enumerate(step.locks):
            if lock not in self.plan.resources:
                self.add(
                    (*loc, "locks", i),
                    f"step {step.id!r}: unknown resource {lock!r}",
                    "add it to the plan's resources or fix the name; "
                    + _suggest(lock, self.plan.resources),
                )
            elif lock in seen:
                self.add(
                    (*loc, "locks", i),
                    f"step {step.id!r}: lock {lock!r} listed twice",
                    "list it once",
                )
            seen.add(lock)
        for i, ev in enumerate(step.evidence):
            if ev not in evidence:
                self.add(
                    (*loc, "evidence", i),
                    f"step {step.id!r}: unknown evidence {ev!r}",
                    "declare it in the stream's evidence list; " + _suggest(ev, evidence),
                )

    def _action(
        self, loc: Loc, step_id: str, agent_name: str, action: str, params: Mapping[str, object]
    ) -> None:
        agent = self.plan.agents.get(agent_name)
        if agent is not None and action not in agent.can:
            self.add(
                (*loc, "action"),
                f"step {step_id!r}: action {action!r} is outside agent "
                f"{agent_name!r}'s scope (can: {', '.join(agent.can)})",
                "use an allowed action or add it to the agent's can list",
            )
            return
        if self.registry is None:
            return
        definition = self.registry.get(action)
        if definition is None:
            self.add(
                (*loc, "action"),
                f"step {step_id!r}: unknown action {action!r}",
                _suggest(action, self.registry),
            )
            return
        try:
            definition.params.model_validate(params)
        except ValidationError as exc:
            for error in exc.errors():
                problem = describe_error(
                    error, self.label, self.pos, (*loc, "with"), model=definition.params
                )
                self.problems.append(problem)


def check_plan(
    plan: Plan, pos: Positions, label: str, registry: ActionCatalog | None
) -> list[PlanProblem]:
    """Return every cross-reference problem of ``plan`` (empty when it is valid)."""
    return _Checker(plan, pos, label, registry).run()
