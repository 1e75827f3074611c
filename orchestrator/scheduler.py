"""The scheduler: a plan's streams run in parallel, their steps under class caps and locks.

Structure (anyio task groups all the way down)::

    run                      one task group, a task per stream
    └── stream               waits for its depends_on streams, then runs its steps as a
        │                    DAG of ``needs`` inside its timeline's hard limit
        └── step             queue for the whole need (class slot + locks) at the
                             coordinator, run the action under its timeout, retry with
                             exponential backoff and jitter, release

A stream whose dependency did not succeed is skipped with that reason. A failed step stops
its stream from starting more steps (steps already running finish); no failure ever cancels
an independent stream. A step whose lock wait passes its ``lock_timeout`` leaves the queue,
says so (``step_retrying`` with ``reason: lock_timeout``), backs off and queues again with its
waiting time credited, so contention alone never fails a run.

Cancellation (Ctrl-C, SIGTERM, a timeline limit) reaches running actions, which stop their
subprocesses; every step and stream still records how it ended.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from pydantic import BaseModel

from agents.base import ActionContext, ActionResult
from agents.registry import ActionFunc, ActionRegistry
from orchestrator.coordination.base import PRIORITY_LEVELS, Blocker, Coordinator, Grant, Need
from orchestrator.errors import ActionFailed, CoordinationError, LockWaitTimeout
from orchestrator.events import EventLog
from streams.model import Plan, StepSpec, StreamSpec
from streams.validation import effective_needs

__all__ = [
    "RunResult",
    "RunStatus",
    "Scheduler",
    "SchedulerConfig",
    "StepStatus",
    "StreamStatus",
]

_diag = structlog.get_logger("orchestrator.scheduler")


class StepStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class StreamStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def exit_code(self) -> int:
        return {"succeeded": 0, "failed": 1, "cancelled": 130}[self.value]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """How steps run: their working directory, base environment and kill grace."""

    workdir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=dict)
    kill_grace_s: float = 5.0
    release_timeout_s: float = 10.0
    seed: int | None = None


@dataclass(slots=True)
class StreamOutcome:
    status: StreamStatus
    reason: str = ""
    steps: dict[str, StepStatus] = field(default_factory=dict)


@dataclass(slots=True)
class RunResult:
    run_id: str
    status: RunStatus
    streams: dict[str, StreamOutcome]


class _StepEnded(Exception):
    """Internal: carries the final status of one attempt out of the action scope."""


class Scheduler:
    """Runs one plan once. Construct, then ``await run()``."""

    def __init__(
        self,
        plan: Plan,
        *,
        run_id: str,
        coordinator: Coordinator,
        registry: ActionRegistry,
        events: EventLog,
        config: SchedulerConfig | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.coordinator = coordinator
        self.registry = registry
        self.events = events
        self.config = config or SchedulerConfig()
        self._random = random.Random(self.config.seed)
        self._outcomes: dict[str, StreamOutcome] = {}
        self._done: dict[str, anyio.Event] = {}
        # Parameters were validated with the plan; parse them once more into models here.
        self._params: dict[tuple[str, str], BaseModel] = {}
        for stream in plan.streams:
            for step in stream.steps:
                action = registry.get_action(step.action)
                self._params[(stream.id, step.id)] = action.params.model_validate(step.with_)

    async def run(self) -> RunResult:
        """Run every stream; return how the run ended. Cancellation propagates after the
        run's end has been recorded."""
        plan = self.plan
        self._done = {s.id: anyio.Event() for s in plan.streams}
        self.events.emit(
            "run_started",
            plan=plan.plan,
            caps=plan.caps,
            resources=plan.resources,
            streams=[s.id for s in plan.streams],
            depends_on={s.id: s.depends_on for s in plan.streams},
            steps=plan.total_steps(),
        )
        status = RunStatus.CANCELLED
        try:
            async with anyio.create_task_group() as tg:
                for stream in plan.streams:
                    tg.start_soon(self._run_stream, stream)
            ok = all(o.status is StreamStatus.SUCCEEDED for o in self._outcomes.values())
            status = RunStatus.SUCCEEDED if ok else RunStatus.FAILED
        finally:
            self.events.emit(
                "run_finished",
                status=status.value,
                streams={sid: o.status.value for sid, o in self._outcomes.items()},
            )
        return RunResult(self.run_id, status, dict(self._outcomes))

    # -- streams ----------------------------------------------------------------------------

    async def _run_stream(self, stream: StreamSpec) -> None:
        log = self.events.bind(stream=stream.id)
        outcome = StreamOutcome(StreamStatus.CANCELLED, "run cancelled")
        self._outcomes[stream.id] = outcome
        try:
            for dep in stream.depends_on:
                await self._done[dep].wait()
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
                priority=stream.priority,
                team=stream.team,
                steps=len(stream.steps),
                needs={k: list(v) for k, v in effective_needs(stream.steps).items()},
                timeline=stream.timeline.model_dump() if stream.timeline else None,
            )
            limit_s = stream.timeline.limit_s if stream.timeline else None
            with anyio.move_on_after(limit_s) as scope:
                await self._run_steps(stream, outcome, log)
            if scope.cancelled_caught:
                outcome.status = StreamStatus.FAILED
                outcome.reason = f"timeline limit of {limit_s:g}s exceeded"
        finally:
            for step in stream.steps:
                if step.id not in outcome.steps:
                    log.emit(
                        "step_skipped",
                        step=step.id,
                        agent=step.agent,
                        reason=f"stream {outcome.status.value}: {outcome.reason}",
                    )
            log.emit(
                "stream_finished",
                status=outcome.status.value,
                reason=outcome.reason,
                steps={k: v.value for k, v in outcome.steps.items()},
            )
            self._done[stream.id].set()

    async def _run_steps(self, stream: StreamSpec, outcome: StreamOutcome, log: EventLog) -> None:
        needs = effective_needs(stream.steps)
        waiting = {step_id: len(deps) for step_id, deps in needs.items()}
        dependents: dict[str, list[str]] = {step_id: [] for step_id in needs}
        for step_id, deps in needs.items():
            for dep in deps:
                dependents[dep].append(step_id)
        by_id = {step.id: step for step in stream.steps}
        failed: list[str] = []

        async def run_one(step: StepSpec, tg: anyio.abc.TaskGroup) -> None:
            status = StepStatus.CANCELLED
            try:
                status = await self._run_step(stream, step, log)
            finally:
                outcome.steps[step.id] = status
            if status is not StepStatus.SUCCEEDED:
                failed.append(step.id)
                return
            if failed:
                return
            for child in dependents[step.id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    tg.start_soon(run_one, by_id[child], tg)

        async with anyio.create_task_group() as tg:
            for step in stream.steps:
                if waiting[step.id] == 0:
                    tg.start_soon(run_one, step, tg)
        if failed:
            outcome.status = StreamStatus.FAILED
            outcome.reason = "step failed: " + ", ".join(
                f"{s} ({outcome.steps[s].value})" for s in failed
            )
        else:
            outcome.status = StreamStatus.SUCCEEDED
            outcome.reason = ""

    # -- steps ------------------------------------------------------------------------------

    def _backoff_s(self, attempt: int) -> float:
        defaults = self.plan.defaults
        base: float = min(defaults.backoff_max, defaults.backoff * 2.0 ** (attempt - 1))
        return base * (0.5 + self._random.random() / 2)  # "equal jitter"

    async def _run_step(
        self, stream: StreamSpec, step: StepSpec, stream_log: EventLog
    ) -> StepStatus:
        plan = self.plan
        resource_class = plan.agent_class(step.agent)
        log = stream_log.bind(
            step=step.id, agent=step.agent, resource_class=resource_class, locks=sorted(step.locks)
        )
        retries = step.retries if step.retries is not None else plan.defaults.retries
        lock_timeout = step.lock_timeout or plan.defaults.lock_timeout
        attempt = 1
        lock_waits = 0
        age_credit_s = 0.0
        while True:
            need = Need(
                holder=f"{self.run_id}/{stream.id}/{step.id}",
                resource_class=resource_class,
                cap=plan.caps[resource_class],
                locks=tuple(step.locks),
                priority=PRIORITY_LEVELS[stream.priority],
                age_credit_s=age_credit_s,
                labels={
                    "run_id": self.run_id,
                    "stream": stream.id,
                    "step": step.id,
                    "agent": step.agent,
                },
            )
            log.emit("step_queued", attempt=attempt, priority=stream.priority)
            queued_at = anyio.current_time()

            def blocked(blockers: tuple[Blocker, ...], attempt: int = attempt) -> None:
                log.emit(
                    "step_waiting",
                    attempt=attempt,
                    # Holders of this run are named without the run id, for reading.
                    waiting_for=[b.describe().replace(f"{self.run_id}/", "") for b in blockers],
                    blocked_on=[
                        {"resource": b.resource, "holders": list(b.holders)} for b in blockers
                    ],
                )

            try:
                grant = await self.coordinator.acquire(
                    need, timeout_s=lock_timeout, on_blocked=blocked
                )
            except LockWaitTimeout as exc:
                lock_waits += 1
                age_credit_s += exc.waited_s
                delay = self._backoff_s(lock_waits)
                log.emit(
                    "step_retrying",
                    attempt=attempt,
                    reason="lock_timeout",
                    waited_s=round(exc.waited_s, 6),
                    delay_s=round(delay, 6),
                    message=f"waited {exc.waited_s:.3g}s for {', '.join(exc.resources)}; "
                    f"queueing again in {delay:.3g}s",
                )
                await anyio.sleep(delay)
                continue
            waited_s = anyio.current_time() - queued_at
            status, _, reason = await self._attempt(stream, step, grant, attempt, waited_s, log)
            if status is StepStatus.SUCCEEDED or status is StepStatus.CANCELLED:
                return status
            if attempt > retries:
                return status
            delay = self._backoff_s(attempt)
            log.emit(
                "step_retrying",
                attempt=attempt,
                reason=status.value,
                delay_s=round(delay, 6),
                message=f"{reason}; attempt {attempt + 1} of {retries + 1} in {delay:.3g}s",
            )
            await anyio.sleep(delay)
            attempt += 1

    async def _attempt(
        self,
        stream: StreamSpec,
        step: StepSpec,
        grant: Grant,
        attempt: int,
        waited_s: float,
        log: EventLog,
    ) -> tuple[StepStatus, ActionResult | None, str]:
        """Run the action once while holding ``grant``; always release it and record the end."""
        definition = self.registry.get_action(step.action)
        timeout_s = step.timeout or self.plan.defaults.timeout
        ctx = ActionContext(
            run_id=self.run_id,
            stream=stream.id,
            step=step.id,
            agent=step.agent,
            attempt=attempt,
            fences=dict(grant.fences),
            env=self._step_env(stream, step, attempt, grant),
            workdir=self.config.workdir,
            kill_grace_s=self.config.kill_grace_s,
        )
        started = anyio.current_time()
        log.emit(
            "step_started",
            attempt=attempt,
            fences=dict(grant.fences),
            waited_s=round(waited_s, 6),
            timeout_s=timeout_s,
        )
        status = StepStatus.CANCELLED
        reason = "cancelled"
        result: ActionResult | None = None
        try:
            with anyio.move_on_after(timeout_s) as timer:
                if grant.leased:
                    status, result, reason = await self._call_watching(
                        grant, definition.run, ctx, stream, step
                    )
                else:
                    status, result, reason = await self._call(definition.run, ctx, stream, step)
            if timer.cancelled_caught:
                status, reason = StepStatus.TIMED_OUT, f"timed out after {timeout_s:g}s"
        finally:
            fields: dict[str, Any] = {
                "attempt": attempt,
                "status": status.value,
                "duration_s": round(anyio.current_time() - started, 6),
                "reason": reason,
            }
            if result is not None:
                fields.update(
                    exit_code=result.exit_code,
                    metrics=dict(result.metrics),
                    output_sha256=result.output_sha256,
                    output_bytes=result.output_bytes,
                )
                if status is not StepStatus.SUCCEEDED and result.output:
                    fields["output_tail"] = result.output[-2000:]
            log.emit("step_finished", **fields)
            with anyio.move_on_after(self.config.release_timeout_s, shield=True):
                await self.coordinator.release(grant)
        return status, result, reason

    async def _call(
        self, run: ActionFunc, ctx: ActionContext, stream: StreamSpec, step: StepSpec
    ) -> tuple[StepStatus, ActionResult | None, str]:
        """Call the action; its failures (and its bugs) become a failed status."""
        try:
            result = await run(ctx, self._params[(stream.id, step.id)])
        except ActionFailed as exc:
            return StepStatus.FAILED, None, exc.reason
        except CoordinationError as exc:
            return StepStatus.FAILED, None, str(exc)
        except Exception as exc:  # an action's bug must not take the run down
            _diag.exception("action_crashed", action=step.action, step=step.id)
            return StepStatus.FAILED, None, f"action raised {type(exc).__name__}: {exc}"
        return (StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED), result, result.summary

    async def _call_watching(
        self,
        grant: Grant,
        run: ActionFunc,
        ctx: ActionContext,
        stream: StreamSpec,
        step: StepSpec,
    ) -> tuple[StepStatus, ActionResult | None, str]:
        """:meth:`_call`, cancelled at once if the grant's lease is lost meanwhile."""
        outcome: tuple[StepStatus, ActionResult | None, str] = (
            StepStatus.CANCELLED,
            None,
            "lease on its locks was lost",
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_cancel_when_lost, grant, tg.cancel_scope)
            outcome = await self._call(run, ctx, stream, step)
            tg.cancel_scope.cancel()
        return outcome

    def _step_env(
        self, stream: StreamSpec, step: StepSpec, attempt: int, grant: Grant
    ) -> dict[str, str]:
        env = dict(self.config.env)
        env.update(
            ORCH_RUN_ID=self.run_id,
            ORCH_PLAN=self.plan.plan,
            ORCH_STREAM=stream.id,
            ORCH_STEP=step.id,
            ORCH_AGENT=step.agent,
            ORCH_ATTEMPT=str(attempt),
        )
        for lock, fence in grant.fences.items():
            env[f"ORCH_FENCE_{_env_name(lock)}"] = str(fence)
        return env


def _env_name(resource: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in resource).upper()


async def _cancel_when_lost(grant: Grant, scope: anyio.CancelScope) -> None:
    await grant.lost.wait()
    scope.cancel()
