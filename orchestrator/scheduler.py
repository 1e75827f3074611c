"""The scheduler: a plan's streams run in parallel, their steps under class caps and locks.

Structure (anyio task groups all the way down)::

    run                      one task group, a task per stream
    └── stream               waits for its depends_on streams, then runs its steps as a
        │                    DAG of ``needs`` inside its timeline's hard limit
        └── step             a StepJob run by the StepRunner: queue for the whole need
                             (class slot + locks), run, retry with backoff, release

Which driver performs a step (a built-in action, the agent's own process) and with what
parameters is :class:`~agents.drivers.PlanDrivers`' business, decided once per step before
the run; the scheduler only hands each step's task to the step runner.

A stream whose dependency did not succeed is skipped with that reason. A failed step stops
its stream from starting more steps (steps already running finish); no failure ever cancels
an independent stream. Cancellation (Ctrl-C, SIGTERM, a timeline limit) reaches running
actions, which stop their subprocesses; every step and stream still records how it ended.

Two more ways a run can end, for the daemon:

- :meth:`Scheduler.drain` stops new attempts from starting while running ones finish; the
  run then ends ``suspended`` (event ``run_suspended``), unfinished streams unrecorded, to be
  resumed later.
- A scheduler built with a :class:`PriorState` (folded from a run's stored events) resumes
  that run: finished streams and succeeded steps are not run again; a step that was running
  when the daemon stopped is re-run if the plan marks it ``idempotent``, and otherwise ends
  ``interrupted``, failing its stream.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from agents.base import ActionResult
from agents.drivers import DriverTask, PlanDrivers
from agents.gpus import GpuAllocator, NvmlProbe
from agents.registry import ActionRegistry
from foundation.status import RunStatus
from orchestrator.coordination.base import PRIORITY_LEVELS, Coordinator
from orchestrator.coordination.windowed import WindowedQueue
from orchestrator.events import EventLog
from orchestrator.prior_results import results_from_events
from orchestrator.rollback import RollbackReport, roll_back
from orchestrator.service_time import stream_timing
from orchestrator.step_dag import StepDag
from orchestrator.step_runner import (
    Drain,
    StepJob,
    StepOutcome,
    StepRunner,
    StepRunnerConfig,
    StepStatus,
)
from orchestrator.stream_gate import GateVerdict, decide_gate
from orchestrator.token_usage import TokenUsage
from orchestrator.tool_locks import CoordinatorToolLocks
from streams.file_roots import plan_roots
from streams.model import Plan, StepSpec, StreamSpec
from streams.validation import effective_needs

__all__ = [
    "PriorState",
    "RunResult",
    "RunStatus",
    "Scheduler",
    "SchedulerConfig",
    "StepStatus",
    "StreamOutcome",
    "StreamStatus",
]


class StreamStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"  # not final: the run was drained before the stream ended


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How steps run: their working directory, base environment and kill grace."""

    workdir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=dict)
    kill_grace_s: float = 5.0
    release_timeout_s: float = 10.0
    rollback_deadline_s: float = 600.0
    seed: int | None = None
    #: Waiting this long raises a step one priority level (``ORCH_AGING_S``), also in the
    #: run's own queue in front of a shared coordinator.
    aging_s: float = 30.0


@dataclass(slots=True)
class StreamOutcome:
    status: StreamStatus
    reason: str = ""
    steps: dict[str, StepStatus] = field(default_factory=dict)
    started: bool = False
    #: Succeeded steps in completion order (outcome None: succeeded before a resume).
    completed: list[tuple[StepSpec, StepOutcome | None]] = field(default_factory=list)
    gate: GateVerdict | None = None
    rollback: RollbackReport | None = None


@dataclass(slots=True, repr=False)
class RunResult:
    run_id: str
    status: RunStatus
    streams: dict[str, StreamOutcome]

    def __repr__(self) -> str:
        # Short on purpose: on Python 3.11, asyncio's Runner builds the repr of its main
        # task, result included, twice as it ends (an enum look-up of the SIGINT handler
        # formats an error message that nobody reads), and the whole repr of a 10,000-step
        # run's outcomes took about a second of `orchestrator run`'s time.
        return f"RunResult({self.run_id!r}, {self.status.value}, {len(self.streams)} streams)"


@dataclass(frozen=True, slots=True)
class PriorState:
    """What a run's stored events say happened before the daemon stopped."""

    streams: Mapping[str, tuple[StreamStatus, str]]
    steps: Mapping[tuple[str, str], tuple[str, int]]  # latest status ("running") and attempt
    started_streams: frozenset[str]
    #: What each step that succeeded measured and collected, for the gate after a resume.
    results: Mapping[tuple[str, str], ActionResult] = field(default_factory=dict)
    #: Model tokens (input + output) the run's steps spent before: its token_budget's start.
    tokens_spent: int = 0

    @classmethod
    def from_events(cls, events: Iterable[Mapping[str, Any]]) -> PriorState:
        events = list(events)  # read twice
        streams: dict[str, tuple[StreamStatus, str]] = {}
        steps: dict[tuple[str, str], tuple[str, int]] = {}
        started: set[str] = set()
        spent = TokenUsage()
        for event in events:
            name = event.get("event")
            if name == "step_finished":
                spent.add(event.get("usage"))
            if name == "stream_started":
                started.add(str(event["stream"]))
            elif name == "stream_finished":
                streams[str(event["stream"])] = (
                    StreamStatus(event["status"]),
                    str(event.get("reason") or ""),
                )
            elif name == "step_started":
                steps[(str(event["stream"]), str(event["step"]))] = (
                    "running",
                    int(event.get("attempt", 1)),
                )
            elif name == "step_finished" and event.get("started") is not False:
                steps[(str(event["stream"]), str(event["step"]))] = (
                    str(event["status"]),
                    int(event.get("attempt", 1)),
                )
        return cls(
            streams=streams,
            steps=steps,
            started_streams=frozenset(started),
            results=results_from_events(events),
            tokens_spent=spent.input_tokens + spent.output_tokens,
        )


class Scheduler:
    """Runs one plan once (or resumes it). Construct, then ``await run()``."""

    def __init__(
        self,
        plan: Plan,
        *,
        run_id: str,
        coordinator: Coordinator,
        registry: ActionRegistry,
        events: EventLog,
        config: SchedulerConfig | None = None,
        prior: PriorState | None = None,
        gpus: GpuAllocator | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.events = events
        self.config = config or SchedulerConfig()
        self.prior = prior
        self.registry = registry
        self.drivers = PlanDrivers(
            plan,
            registry,
            tool_locks=CoordinatorToolLocks(coordinator),
            tokens_spent=prior.tokens_spent if prior is not None else 0,
        )
        self._own_probe: NvmlProbe | None = None
        self._drain = Drain()
        self._outcomes: dict[str, StreamOutcome] = {}
        self._done: dict[str, anyio.Event] = {}
        self._rollbacks: set[anyio.CancelScope] = set()
        self._abandoned = False
        self._steps = StepRunner(
            run_id=run_id,
            plan_name=plan.plan,
            coordinator=coordinator,
            config=StepRunnerConfig(
                workdir=self.config.workdir,
                env=self.config.env,
                kill_grace_s=self.config.kill_grace_s,
                release_timeout_s=self.config.release_timeout_s,
                backoff_s=plan.defaults.backoff,
                backoff_max_s=plan.defaults.backoff_max,
                file_roots=plan_roots(plan, self.config.workdir),
            ),
            drain=self._drain,
            rng=random.Random(self.config.seed),
            gpus=gpus or self._own_gpus(plan),
        )
        # Parameters were validated with the plan; each step's driver parses them once, here.
        self._tasks: dict[tuple[str, str], DriverTask] = {}
        for stream in plan.streams:
            rollback = stream.rollback.steps if stream.rollback else []
            for step in [*stream.steps, *rollback]:
                self._tasks[(stream.id, step.id)] = self.drivers.for_step(step)

    def _own_gpus(self, plan: Plan) -> GpuAllocator | None:
        """A GPU allocator of this run's own, when a step needs GPUs and none was given
        (the daemon gives one shared by all its runs)."""
        steps = [
            st for s in plan.streams for st in [*s.steps, *(s.rollback.steps if s.rollback else [])]
        ]
        if not any(st.gpus for st in steps):
            return None
        self._own_probe = NvmlProbe()
        return GpuAllocator(self._own_probe)

    def drain(self) -> None:
        """Start no new step attempts; the run ends ``suspended`` once running ones end."""
        self._drain.start()

    async def run(self) -> RunResult:
        """Run (or resume) every stream; return how the run ended. Cancellation propagates
        after the run's end has been recorded."""
        plan = self.plan
        self._done = {s.id: anyio.Event() for s in plan.streams}
        if self.prior is None:
            self.events.emit(
                "run_started",
                plan=plan.plan,
                caps=plan.caps,
                resources=plan.resources,
                streams=[s.id for s in plan.streams],
                depends_on={s.id: s.depends_on for s in plan.streams},
                steps=plan.total_steps(),
                coordinator=coordinator_identity(self._steps.coordinator),
            )
        else:
            self.events.emit("run_resumed", finished_streams=sorted(self.prior.streams))
        status = RunStatus.CANCELLED
        try:
            async with anyio.create_task_group() as tg:
                if not self._steps.queues_without_tasks:  # Redis: queue here, a window there
                    windowed = WindowedQueue(
                        self._steps.coordinator,
                        tg,
                        aging_s=self.config.aging_s,
                        release_timeout_s=self.config.release_timeout_s,
                    )
                    self._steps.queue_through(windowed.submit)
                for stream in plan.streams:
                    tg.start_soon(self._run_stream, stream)
            statuses = {o.status for o in self._outcomes.values()}
            if StreamStatus.SUSPENDED in statuses:
                status = RunStatus.SUSPENDED
            elif statuses == {StreamStatus.SUCCEEDED}:
                status = RunStatus.SUCCEEDED
            else:
                status = RunStatus.FAILED
        finally:
            if self._drain.started and status is RunStatus.CANCELLED:
                status = RunStatus.SUSPENDED  # cancelled at the end of a drain: resumable
            streams = {sid: o.status.value for sid, o in self._outcomes.items()}
            if status is RunStatus.SUSPENDED:
                self.events.emit("run_suspended", streams=streams)
            else:
                self.events.emit("run_finished", status=status.value, streams=streams)
            if self._own_probe is not None:
                await self._own_probe.aclose()  # shielded, under its own deadline
        return RunResult(self.run_id, status, dict(self._outcomes))

    # -- streams ----------------------------------------------------------------------------

    async def _run_stream(self, stream: StreamSpec) -> None:
        log = self.events.bind(stream=stream.id)
        if self.prior is not None and stream.id in self.prior.streams:
            status, reason = self.prior.streams[stream.id]
            self._outcomes[stream.id] = StreamOutcome(status, reason)
            self._done[stream.id].set()
            return
        outcome = StreamOutcome(StreamStatus.CANCELLED, "run cancelled")
        self._outcomes[stream.id] = outcome
        try:
            for dep in stream.depends_on:
                await self._done[dep].wait()
            if any(self._outcomes[d].status is StreamStatus.SUSPENDED for d in stream.depends_on):
                outcome.status = StreamStatus.SUSPENDED
                return
            if self._drain.started:
                outcome.status = StreamStatus.SUSPENDED
                return
            blocked = [
                d
                for d in stream.depends_on
                if self._outcomes[d].status is not StreamStatus.SUCCEEDED
            ]
            if blocked:
                outcome.status = StreamStatus.SKIPPED
                outcome.reason = "dependency did not succeed: " + ", ".join(
                    f"{d} ({self._outcomes[d].status.value})" for d in blocked
                )
                return
            log.emit(
                "stream_started",
                title=stream.title,
                signature=stream.signature(),
                methodology=stream.methodology,
                priority=stream.priority,
                team=stream.team,
                steps=len(stream.steps),
                needs={k: list(v) for k, v in effective_needs(stream.steps).items()},
                timeline=stream.timeline.model_dump() if stream.timeline else None,
                resumed=self.prior is not None and stream.id in self.prior.started_streams,
            )
            outcome.started = True
            limit_s = stream.timeline.limit_s if stream.timeline else None
            with anyio.move_on_after(limit_s) as scope:
                await self._run_steps(stream, outcome, log)
            if scope.cancelled_caught:
                outcome.status = StreamStatus.FAILED
                outcome.reason = f"timeline limit of {limit_s:g}s exceeded"
            if outcome.status is StreamStatus.SUCCEEDED:
                self._judge(stream, outcome, log)
            if outcome.status is StreamStatus.FAILED:
                await self._roll_back(stream, outcome, log, outcome.reason)
        except anyio.get_cancelled_exc_class():
            if outcome.started and not self._drain.started and outcome.rollback is None:
                # `cancel` still rolls the stream back, shielded, within a deadline, unless
                # the user abandons it (:meth:`abandon_rollbacks`).
                with anyio.move_on_after(self.config.rollback_deadline_s, shield=True) as rb:
                    self._rollbacks.add(rb)
                    try:
                        await self._roll_back(stream, outcome, log, "run cancelled")
                    finally:
                        self._rollbacks.discard(rb)
                if rb.cancelled_caught and self._abandoned:
                    log.emit("rollback_abandoned", reason="abandoned by the user")
            raise
        finally:
            if self._drain.started and outcome.status is StreamStatus.CANCELLED:
                outcome.status = StreamStatus.SUSPENDED
            # A suspended stream records nothing: it is resumed later.
            if outcome.status is not StreamStatus.SUSPENDED:
                self._record_end(stream, outcome, log)
            self._done[stream.id].set()

    def abandon_rollbacks(self) -> None:
        """Cut the rollbacks a cancelled run is doing (a second Ctrl-C); each cut one is
        recorded as ``rollback_abandoned``."""
        self._abandoned = True
        for scope in list(self._rollbacks):
            scope.cancel()

    def _judge(self, stream: StreamSpec, outcome: StreamOutcome, log: EventLog) -> None:
        """Evaluate the stream's gate and mandatory evidence; a miss fails the stream."""
        verdict = decide_gate(stream, outcome.completed)
        if verdict is None:
            return
        outcome.gate = verdict
        log.emit("gate_evaluated", **verdict.as_event())
        if not verdict.passed:
            outcome.status = StreamStatus.FAILED
            outcome.reason = f"gate failed: {verdict.reason()}"

    async def _roll_back(
        self, stream: StreamSpec, outcome: StreamOutcome, log: EventLog, reason: str
    ) -> None:
        report = await roll_back(
            stream=stream,
            completed=outcome.completed,
            reason=reason,
            runner=self._steps,
            registry=self.registry,
            params=lambda step: self._tasks[(stream.id, step.id)].params,
            job=lambda step, action, params, step_id, phase: self._job(
                stream, step, action=action, params=params, step_id=step_id, phase=phase
            ),
            log=log,
        )
        outcome.rollback = report
        if report.status != "nothing to do":
            outcome.reason = f"{outcome.reason}; {report.describe()}"

    def _record_end(self, stream: StreamSpec, outcome: StreamOutcome, log: EventLog) -> None:
        for step in stream.steps:
            if step.id not in outcome.steps:
                log.emit(
                    "step_skipped",
                    step=step.id,
                    agent=step.agent,
                    reason=f"stream {outcome.status.value}: {outcome.reason}",
                )
        fields: dict[str, Any] = stream_timing(stream, outcome.completed)
        if outcome.gate is not None:
            fields["gate"] = {
                "passed": outcome.gate.passed,
                "confidence": outcome.gate.result.confidence if outcome.gate.result else None,
            }
        if outcome.rollback is not None:
            fields["rollback"] = {
                "status": outcome.rollback.status,
                "duration_s": round(outcome.rollback.duration_s, 6),
                "within_budget": outcome.rollback.within_budget,
            }
        log.emit(
            "stream_finished",
            status=outcome.status.value,
            reason=outcome.reason,
            steps={k: v.value for k, v in outcome.steps.items()},
            **fields,
        )

    async def _run_steps(self, stream: StreamSpec, outcome: StreamOutcome, log: EventLog) -> None:
        failed: list[str] = []
        first_attempt = self._resume_steps(stream, outcome, failed, log)
        dag = StepDag(
            steps=stream.steps,
            runner=self._steps,
            drain=self._drain,
            job=lambda step, first: self._job(stream, step, first_attempt=first),
            first_attempt=first_attempt,
            statuses=outcome.steps,
            completed=outcome.completed,
            failed=failed,
            log=log,
        )
        await dag.run()
        if failed:
            outcome.status = StreamStatus.FAILED
            outcome.reason = "step failed: " + ", ".join(
                f"{s} ({outcome.steps[s].value})" for s in failed
            )
        elif len(outcome.steps) < len(stream.steps):
            outcome.status = StreamStatus.SUSPENDED  # drained before every step ran
        else:
            outcome.status = StreamStatus.SUCCEEDED
            outcome.reason = ""

    def _resume_steps(
        self, stream: StreamSpec, outcome: StreamOutcome, failed: list[str], log: EventLog
    ) -> dict[str, int]:
        """Fold a resumed stream's prior step states in; return first attempts to re-run."""
        first_attempt: dict[str, int] = {}
        if self.prior is None:
            return first_attempt
        for step in stream.steps:
            prior = self.prior.steps.get((stream.id, step.id))
            if prior is None:
                continue
            status, attempt = prior
            if status == StepStatus.SUCCEEDED:
                outcome.steps[step.id] = StepStatus.SUCCEEDED
                # Its metrics and evidence count for the gate; its plan `undo:` still applies.
                result = self.prior.results.get((stream.id, step.id))
                done = (
                    None
                    if result is None
                    else StepOutcome(StepStatus.SUCCEEDED, "", attempt, result)
                )
                outcome.completed.append((step, done))
            elif status in (StepStatus.FAILED, StepStatus.TIMED_OUT):
                outcome.steps[step.id] = StepStatus(status)
                failed.append(step.id)
            elif step.idempotent:  # was running (or cancelled by the stop): safe to re-run
                first_attempt[step.id] = attempt + 1
            else:
                outcome.steps[step.id] = StepStatus.INTERRUPTED
                failed.append(step.id)
                log.emit(
                    "step_finished",
                    step=step.id,
                    agent=step.agent,
                    resource_class=self.plan.agent_class(step.agent),
                    locks=sorted(step.locks),
                    attempt=attempt,
                    status=StepStatus.INTERRUPTED.value,
                    duration_s=0.0,
                    reason="was running when the daemon stopped and is not marked idempotent",
                )
        return first_attempt

    def _job(
        self,
        stream: StreamSpec,
        step: StepSpec,
        *,
        first_attempt: int = 1,
        action: str | None = None,
        params: BaseModel | None = None,
        step_id: str | None = None,
        phase: str = "step",
    ) -> StepJob:
        """The job for ``step``; undo and rollback phases give their own id, and an undo
        its own action (a rollback procedure step is performed like any step)."""
        plan = self.plan
        resource_class = plan.agent_class(step.agent)
        task = self._tasks[(stream.id, step.id)]
        if phase == "undo" and action is not None and params is not None:
            task = self.drivers.for_action(action, params)
        return StepJob(
            stream=stream.id,
            step=step_id or step.id,
            agent=step.agent,
            task=task,
            labels={} if phase == "step" else {"phase": phase},
            evidence_ids=tuple(step.evidence),
            drainable=phase == "step",
            gpus=step.gpus if phase != "undo" else 0,
            gpu_exclusive=step.gpu_exclusive,
            on_no_gpu=step.on_no_gpu,
            resource_class=resource_class,
            cap=plan.caps[resource_class],
            locks=tuple(step.locks),
            priority=PRIORITY_LEVELS[stream.priority],
            timeout_s=step.timeout or plan.defaults.timeout,
            retries=step.retries if step.retries is not None else plan.defaults.retries,
            lock_timeout_s=step.lock_timeout or plan.defaults.lock_timeout,
            first_attempt=first_attempt,
        )


def coordinator_identity(coordinator: Coordinator) -> dict[str, str]:
    """What identifies the coordinator that runs share, without a secret: ``verify-log``
    compares fences and caps only between runs with the same one (Redis: the URL without its
    password and the namespace; in-process: nothing, each run is checked alone)."""
    where, namespace = getattr(coordinator, "where", None), getattr(coordinator, "namespace", None)
    if isinstance(where, str) and isinstance(namespace, str):
        return {"kind": "redis", "where": where, "namespace": namespace}
    return {"kind": "in-process"}
