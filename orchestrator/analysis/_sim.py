"""A plan's expected makespan and critical path: the real scheduler on a virtual clock.

:func:`simulation_plan` copies the plan with every step replaced by the ``sleep`` action
for its estimated duration, keeping what decides the schedule (agents and their classes,
caps, locks, ``needs``, ``depends_on``, priorities) and dropping what must not act in a
simulation or would make it depend on chance:

- gates, mandatory evidence, rollback and undo (nothing is judged or reverted);
- timeline limits (a stream runs as long as its estimate says; one that would pass its
  limit is reported instead of cancelled);
- step timeouts and retries (a sleep neither hangs nor fails);
- ``lock_timeout`` (its re-queues add randomized backoff, and leave waits that no step's
  release explains).

A stream's estimated duration is spread over its steps so that its longest chain of
``needs`` takes exactly the estimate: in proportion to the steps' own ``sleep`` seconds
where every step is a timed ``sleep``, else evenly along the chain (so a sequence of n
steps gets estimate/n each, and steps beside the chain no more than it).

:func:`simulate` runs :class:`~orchestrator.scheduler.Scheduler` with an
:class:`~orchestrator.coordination.InProcessCoordinator` on trio's ``MockClock``, which
jumps to the next deadline whenever every task waits, so hours of plan take milliseconds.
Each event is stamped with the virtual time it was emitted at. Ties (two waiters queued at
the same instant with the same priority) are broken as the scheduler breaks them at run
time, and trio runs ready tasks in a shuffled order, so a plan with symmetric contention
may report either of two equally long critical paths.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

import anyio

from agents.actions.sleep import SleepParams, run_sleep
from agents.registry import ActionRegistry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog
from orchestrator.scheduler import Scheduler, SchedulerConfig
from streams.model import Plan, StepSpec, StreamSpec
from streams.validation import effective_needs

__all__ = ["PathStep", "Schedule", "StepTiming", "simulate", "simulation_plan", "step_durations"]

#: A step timeout that never fires within a simulated plan (about 30 years).
_NEVER_S = 1e9
#: Virtual times come from sums of the same floats; this is "the same instant".
_SAME_INSTANT_S = 1e-6
_RUN_ID = "simulation"

StepKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class StepTiming:
    """When a step queued, started and finished in the simulation (seconds from its start)."""

    stream: str
    step: str
    resource_class: str
    locks: tuple[str, ...]
    queued_s: float
    started_s: float
    finished_s: float
    blockers: tuple[str, ...] = ()  # "stream/step" holders named when it had to wait


@dataclass(frozen=True, slots=True)
class PathStep:
    """One step of the critical path; ``after`` says what its start waited for (None: it
    started with the plan)."""

    stream: str
    step: str
    started_s: float
    finished_s: float
    after: str | None


@dataclass(frozen=True, slots=True)
class Schedule:
    """The simulated run: its makespan, critical path (first step first), every step's
    timing, each step's simulated duration, and streams that would pass their limit."""

    makespan_s: float
    critical_path: tuple[PathStep, ...]
    steps: tuple[StepTiming, ...]
    durations: Mapping[StepKey, float]
    over_limit: tuple[str, ...]


def step_durations(stream: StreamSpec, estimate_s: float | None) -> dict[str, float]:
    """Each step's share of the stream's ``estimate_s`` (see the module doc). Without an
    estimate, timed ``sleep`` steps keep their own seconds and other steps take none."""
    weights = _sleep_seconds(stream.steps)
    if estimate_s is None:
        return dict(weights) if weights else {s.id: 0.0 for s in stream.steps}
    if not weights:
        weights = {s.id: 1.0 for s in stream.steps}
    chain = _longest_chain(stream.steps, weights)
    if chain <= 0:
        return {s.id: 0.0 for s in stream.steps}
    return {step_id: w * estimate_s / chain for step_id, w in weights.items()}


def simulation_plan(
    plan: Plan, estimates_s: Mapping[str, float | None]
) -> tuple[Plan, dict[StepKey, float]]:
    """The plan to simulate and each step's duration in it, from each stream's estimate."""
    durations: dict[StepKey, float] = {}
    streams: list[StreamSpec] = []
    for stream in plan.streams:
        shares = step_durations(stream, estimates_s.get(stream.id))
        steps = []
        for step in stream.steps:
            durations[(stream.id, step.id)] = shares[step.id]
            steps.append(
                step.model_copy(
                    update={
                        "action": "sleep",
                        "instruction": None,
                        "with_": {"seconds": shares[step.id]},
                        "timeout": _NEVER_S,
                        "retries": 0,
                        "lock_timeout": None,
                        "undo": None,
                        "evidence": [],
                    }
                )
            )
        streams.append(
            stream.model_copy(
                update={
                    "steps": steps,
                    "gate": None,
                    "evidence": [],
                    "rollback": None,
                    "timeline": None,
                }
            )
        )
    defaults = plan.defaults.model_copy(
        update={"timeout": _NEVER_S, "retries": 0, "lock_timeout": None}
    )
    copy = plan.model_copy(update={"streams": streams, "defaults": defaults})
    return copy, durations


def simulate(
    plan: Plan,
    estimates_s: Mapping[str, float | None],
    *,
    aging_s: float = 30.0,
    starve_after_s: float = 120.0,
) -> Schedule:
    """Run the plan's simulation (see the module doc) and read its schedule.

    Synchronous: it runs its own trio loop, so call it from sync code or a worker thread,
    never from inside a running event loop. ``aging_s`` and ``starve_after_s`` are the
    coordinator's (the settings' values give the daemon's behaviour).
    """
    # Here, not at the top: trio.testing imports pytest (~0.5 s), which the daemon and
    # every command that loads this package would otherwise pay without simulating.
    import trio.testing

    simulated, durations = simulation_plan(plan, estimates_s)
    clock = trio.testing.MockClock(autojump_threshold=0)
    events: list[tuple[float, dict[str, Any]]] = anyio.run(
        _run,
        simulated,
        aging_s,
        starve_after_s,
        backend="trio",
        backend_options={"clock": clock},
    )
    timings, stream_starts = _timings(plan, events)
    makespan = max((t.finished_s for t in timings.values()), default=0.0)
    path = _critical_path(plan, timings)
    ends: dict[str, float] = {}
    for timing in timings.values():
        ends[timing.stream] = max(ends.get(timing.stream, 0.0), timing.finished_s)
    over = [
        stream.id
        for stream in plan.streams
        if stream.timeline is not None
        and stream.id in ends
        and stream.id in stream_starts
        and ends[stream.id] - stream_starts[stream.id] > stream.timeline.limit_s + _SAME_INSTANT_S
    ]
    return Schedule(
        makespan_s=makespan,
        critical_path=tuple(path),
        steps=tuple(timings.values()),
        durations=durations,
        over_limit=tuple(over),
    )


class _ClockedSink:
    """Keeps each event with the virtual time it was emitted at."""

    def __init__(self) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append((anyio.current_time(), dict(event)))


async def _run(plan: Plan, aging_s: float, starve_after_s: float) -> list[tuple[float, Any]]:
    registry = ActionRegistry()
    registry.register("sleep", SleepParams, "wait a while")(run_sleep)
    sink = _ClockedSink()
    scheduler = Scheduler(
        plan,
        run_id=_RUN_ID,
        coordinator=InProcessCoordinator(aging_s=aging_s, starve_after_s=starve_after_s),
        registry=registry,
        events=EventLog(_RUN_ID, [sink]),
        config=SchedulerConfig(env={}, seed=0),
    )
    start = anyio.current_time()
    await scheduler.run()
    return [(at - start, event) for at, event in sink.events]


def _timings(
    plan: Plan, events: Sequence[tuple[float, dict[str, Any]]]
) -> tuple[dict[StepKey, StepTiming], dict[str, float]]:
    queued: dict[StepKey, float] = {}
    started: dict[StepKey, float] = {}
    finished: dict[StepKey, float] = {}
    blockers: dict[StepKey, list[str]] = {}
    stream_starts: dict[str, float] = {}
    for at, event in events:
        name = event["event"]
        if name == "stream_started":
            stream_starts[event["stream"]] = at
            continue
        if not name.startswith("step_") or "step" not in event:
            continue
        key = (str(event["stream"]), str(event["step"]))
        if name == "step_queued":
            queued.setdefault(key, at)
        elif name == "step_waiting":
            for blocker in event.get("blocked_on", []):
                for holder in blocker.get("holders", []):
                    blockers.setdefault(key, []).append(str(holder).removeprefix(f"{_RUN_ID}/"))
        elif name == "step_started":
            started[key] = at
        elif name == "step_finished":
            finished[key] = at
    timings: dict[StepKey, StepTiming] = {}
    for stream in plan.streams:
        for step in stream.steps:
            key = (stream.id, step.id)
            if key not in finished:
                continue  # cannot happen in a simulation: every sleep succeeds
            timings[key] = StepTiming(
                stream=stream.id,
                step=step.id,
                resource_class=plan.agent_class(step.agent),
                locks=tuple(sorted(step.locks)),
                queued_s=queued.get(key, started[key]),
                started_s=started[key],
                finished_s=finished[key],
                blockers=tuple(blockers.get(key, ())),
            )
    return timings, stream_starts


def _critical_path(plan: Plan, timings: Mapping[StepKey, StepTiming]) -> list[PathStep]:
    """Walk back from the last step to finish through whatever set each step's start."""
    if not timings:
        return []
    order = {key: n for n, key in enumerate(timings)}
    current: StepTiming | None = max(
        timings.values(), key=lambda t: (t.finished_s, -order[(t.stream, t.step)])
    )
    finder = _Predecessors(plan, timings)
    path: list[PathStep] = []
    seen: set[StepKey] = set()
    while current is not None and (current.stream, current.step) not in seen:
        seen.add((current.stream, current.step))
        after, previous = finder.of(current)
        path.append(
            PathStep(current.stream, current.step, current.started_s, current.finished_s, after)
        )
        current = previous
    path.reverse()
    return path


class _Predecessors:
    """What set each step's start, with the lookups it needs built once."""

    def __init__(self, plan: Plan, timings: Mapping[StepKey, StepTiming]) -> None:
        self.plan = plan
        self.timings = timings
        self.streams = {s.id: s for s in plan.streams}
        self.needs = {s.id: effective_needs(s.steps) for s in plan.streams}
        self.by_finish = sorted(timings.values(), key=lambda t: t.finished_s)
        self.finishes = [t.finished_s for t in self.by_finish]
        self.last: dict[str, StepTiming] = {}
        for timing in self.by_finish:
            self.last[timing.stream] = timing  # sorted by finish: the last one stays

    def of(self, step: StepTiming) -> tuple[str | None, StepTiming | None]:
        """What ``step``'s start waited for, and the step that ended that wait."""
        if step.started_s > step.queued_s + _SAME_INSTANT_S:
            # It queued for a slot or locks: the step whose release let it start.
            low = bisect.bisect_left(self.finishes, step.started_s - _SAME_INSTANT_S)
            high = bisect.bisect_right(self.finishes, step.started_s + _SAME_INSTANT_S)
            released = [
                t for t in self.by_finish[low:high] if t is not step and _shared(self.plan, t, step)
            ]
            if released:
                named = [t for t in released if f"{t.stream}/{t.step}" in step.blockers]
                holder = (named or released)[0]
                what = _shared(self.plan, holder, step)
                return f"{what} held by {holder.stream}/{holder.step}", holder
        needs = self.needs[step.stream][step.step]
        if needs:
            need = max((self.timings[(step.stream, n)] for n in needs), key=lambda t: t.finished_s)
            return f"needs {need.stream}/{need.step}", need
        ends = [self.last[d] for d in self.streams[step.stream].depends_on if d in self.last]
        if ends:
            last = max(ends, key=lambda t: t.finished_s)
            return f"stream {last.stream} (depends_on)", last
        return None, None


def _shared(plan: Plan, holder: StepTiming, waiter: StepTiming) -> str:
    """What ``holder`` held that ``waiter`` needs: a lock, or a capped class's slot ("")."""
    locks = sorted(set(holder.locks) & set(waiter.locks))
    if locks:
        return "lock " + ", ".join(locks)
    capped = plan.caps.get(waiter.resource_class) is not None
    if capped and holder.resource_class == waiter.resource_class:
        return f"class {waiter.resource_class} slot"
    return ""


def _sleep_seconds(steps: Sequence[StepSpec]) -> dict[str, float]:
    """Each step's own ``sleep`` seconds, if every step is a sleep of more than 0s."""
    found: dict[str, float] = {}
    for step in steps:
        seconds = step.with_.get("seconds") if step.action == "sleep" else None
        try:
            value = SleepParams.model_validate({"seconds": seconds}).seconds
        except ValueError:
            return {}
        if seconds is None or value <= 0:
            return {}
        found[step.id] = value
    return found


def _longest_chain(steps: Sequence[StepSpec], weights: Mapping[str, float]) -> float:
    """The weight of the heaviest chain of ``needs`` (validation rules out cycles)."""
    needs = effective_needs(steps)
    finish: dict[str, float] = {}
    for step_id in TopologicalSorter(needs).static_order():
        finish[step_id] = weights.get(step_id, 0.0) + max(
            (finish[n] for n in needs.get(step_id, ())), default=0.0
        )
    return max(finish.values(), default=0.0)
