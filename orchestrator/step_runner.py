"""Running one step: queue for its need, hand it to its driver, retry, release.

A :class:`StepJob` says what to run (a :class:`~agents.drivers.DriverTask`: the step's driver
and parsed parameters) and under which need (class slot plus locks); the :class:`StepRunner`
queues it at the coordinator, has the driver perform it under its timeout while holding the
grant (cancelled at once if a leased grant is lost), records every attempt as
events, retries failures with exponential backoff and jitter, and re-queues (without using up
a retry) when the lock wait passes ``lock_timeout``. While a :class:`Drain` is on, no new
attempt starts: the job raises :class:`Suspended` instead.

A job's first attempt can also queue without a task (:meth:`StepRunner.queue`, when the
coordinator can :meth:`~orchestrator.coordination.base.QueueingCoordinator.submit`): the
caller starts the job's task when the grant comes and hands it the :class:`Queued` entry.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import structlog
from pydantic import BaseModel

from agents.actions.gpu import no_gpu_result
from agents.base import ActionContext, ActionResult
from agents.drivers import DriverCall, StepGrant
from agents.gpus import GpuAllocator, GpuError, GpuUnavailable, cuda_env
from agents.processes.containment import lease_lapsed, step_lease
from foundation.clock import loop_time
from foundation.errors import ActionFailed, CoordinationError, LockLost, LockWaitTimeout
from foundation.secrets import env_secrets, param_secrets, strip_controls
from orchestrator.coordination.base import (
    Blocker,
    Coordinator,
    Grant,
    Need,
    QueueingCoordinator,
    Ticket,
)
from orchestrator.events import EventLog
from orchestrator.evidence_match import provides_of
from orchestrator.step_output import output_fields
from orchestrator.step_types import (
    Drain,
    Queued,
    StepClock,
    StepJob,
    StepOutcome,
    StepRunnerConfig,
    StepStatus,
    Suspended,
    cancelled_before_start,
    textless_params,
)
from orchestrator.store.errors import StoreUnavailable

__all__ = [
    "Drain",
    "Queued",
    "StepJob",
    "StepOutcome",
    "StepRunner",
    "StepRunnerConfig",
    "StepStatus",
    "Suspended",
]

_diag = structlog.get_logger("orchestrator.steps")

Submit = Callable[..., Ticket]


class StepRunner:
    """Runs :class:`StepJob`s of one run against one coordinator."""

    def __init__(
        self,
        *,
        run_id: str,
        plan_name: str,
        coordinator: Coordinator,
        config: StepRunnerConfig,
        drain: Drain,
        rng: random.Random,
        gpus: GpuAllocator | None = None,
    ) -> None:
        self.run_id = run_id
        self.plan_name = plan_name
        self.coordinator = coordinator
        self.config = config
        self.drain = drain
        self._never_drained = Drain()
        self._random = rng
        self.gpus = gpus
        # The secrets of the base environment, found once (a step adds only ORCH_* and CUDA
        # variables to it, which are not secrets).
        self._env_secrets = env_secrets(config.env)
        # Parameters models that can hold no text, hence no secret (found once per model).
        self._textless_params: dict[type[BaseModel], bool] = {}
        self._releases_at_once = bool(getattr(coordinator, "releases_at_once", False))
        # Checked once: an isinstance of a runtime Protocol walks its attributes each time.
        self._submit: Submit | None = (
            coordinator.submit if isinstance(coordinator, QueueingCoordinator) else None
        )

    @property
    def releases_at_once(self) -> bool:
        """Whether :meth:`release` completes without suspending (the in-process coordinator):
        what it grants is then granted before the releasing task runs on."""
        return self._releases_at_once

    async def release(self, grant: Grant) -> None:
        """Give ``grant`` back, shielded and within ``release_timeout_s`` unless the
        coordinator releases at once (then no checkpoint can interrupt it anyway)."""
        if self._releases_at_once:
            await self.coordinator.release(grant)
            return
        with anyio.move_on_after(self.config.release_timeout_s, shield=True):
            await self.coordinator.release(grant)

    @property
    def queues_without_tasks(self) -> bool:
        return self._submit is not None

    def queue_through(self, submit: Submit) -> None:
        """Queue jobs through ``submit`` (a coordinator's, or a
        :class:`~orchestrator.coordination.windowed.WindowedQueue`'s over it)."""
        self._submit = submit

    def backoff_s(self, attempt: int) -> float:
        """Delay before retry ``attempt`` (1-based): exponential, capped, equal jitter."""
        base: float = min(self.config.backoff_max_s, self.config.backoff_s * 2.0 ** (attempt - 1))
        return base * (0.5 + self._random.random() / 2)

    def queue(
        self, job: StepJob, stream_log: EventLog, on_granted: Callable[[Queued], None]
    ) -> Queued | None:
        """Queue ``job``'s first attempt without a task; ``on_granted`` is called (from the
        coordinator's dispatch pass, possibly before this returns) with the entry once it
        is granted. None when it cannot queue so (the coordinator cannot submit, or the job
        has a lock timeout): run it with :meth:`run` then. Raises :class:`Suspended` while
        draining. Withdraw a queued entry with :meth:`withdraw`."""
        submit = self._submit
        if submit is None or job.lock_timeout_s is not None:
            return None
        if job.drainable and self.drain.started:
            raise Suspended
        log = self._bind(job, stream_log)
        attempt = job.first_attempt
        log.emit("step_queued", attempt=attempt)
        entry = Queued(job, log, loop_time())

        def granted(grant: Grant) -> None:
            entry.grant = grant
            on_granted(entry)

        entry.ticket = submit(
            self._need(job, 0.0), on_granted=granted, on_blocked=self._on_blocked(log, attempt)
        )
        return entry

    async def run(
        self,
        job: StepJob,
        stream_log: EventLog,
        *,
        on_queued: Callable[[], None] | None = None,
        before_release: Callable[[], Awaitable[None]] | None = None,
        queued: Queued | None = None,
    ) -> StepOutcome:
        """Run ``job`` to its final status; raise :class:`Suspended` when draining first.

        ``on_queued`` is called once the need first stands in the coordinator's queue (or
        was granted at once). ``before_release`` is awaited after a successful attempt while
        its grant is still held, so successors queued there compete for the released slot
        and locks by their keys instead of arriving after the release was handed out.
        ``queued``: the job's granted :class:`Queued` entry (from :meth:`queue`); its first
        attempt starts under that grant.
        """
        drain = self.drain if job.drainable else self._never_drained
        log = queued.log if queued is not None else self._bind(job, stream_log)
        attempt = job.first_attempt
        last_attempt = job.first_attempt + job.retries
        lock_waits = 0
        age_credit_s = 0.0
        granted = queued.grant if queued is not None else None
        clock = StepClock(queued.queued_at if queued is not None else loop_time())
        while True:
            if granted is None:
                log.emit("step_queued", attempt=attempt)
                queued_at = loop_time()
            else:
                assert queued is not None
                queued_at = queued.queued_at
                if drain.started:  # granted, but draining before it started: give it back
                    await self.release(granted)
                    raise Suspended
            given, granted = granted, None
            try:
                grant, gpus = await self._hold(
                    job, given, drain, log, attempt, age_credit_s, on_queued
                )
            except GpuError as exc:  # the grant has been given back
                return clock.stamp(self._without_gpu(job, attempt, exc, log))
            except LockWaitTimeout as exc:  # GpuWaitTimeout too: the grant was given back
                lock_waits += 1
                age_credit_s += exc.waited_s
                delay = self.backoff_s(lock_waits)
                clock.queued_s += exc.waited_s + delay
                log.emit(
                    "step_retrying",
                    attempt=attempt,
                    reason="lock_timeout",
                    waited_s=round(exc.waited_s, 6),
                    delay_s=round(delay, 6),
                    message=f"waited {exc.waited_s:.3g}s for {', '.join(exc.resources)}; "
                    f"queueing again in {delay:.3g}s",
                )
                with self._before_start(drain, log, attempt):
                    await anyio.sleep(delay)
                continue
            waited_s = loop_time() - queued_at
            clock.queued_s += waited_s
            outcome = await self._attempt(job, grant, gpus, attempt, waited_s, log, before_release)
            if outcome.status in (StepStatus.SUCCEEDED, StepStatus.CANCELLED):
                return clock.stamp(outcome)
            if attempt >= last_attempt or not outcome.retryable:
                return clock.stamp(outcome)
            delay = self.backoff_s(attempt - job.first_attempt + 1)
            log.emit(
                "step_retrying",
                attempt=attempt,
                reason=outcome.status.value,
                delay_s=round(delay, 6),
                message=f"{outcome.reason}; attempt {attempt + 1} of {last_attempt} "
                f"in {delay:.3g}s",
            )
            with self._before_start(drain, log, attempt):
                await anyio.sleep(delay)
            attempt += 1

    def _bind(self, job: StepJob, stream_log: EventLog) -> EventLog:
        return stream_log.bind(
            step=job.step,
            agent=job.agent,
            resource_class=job.resource_class,
            locks=sorted(job.locks),
            **job.labels,
        )

    def _need(self, job: StepJob, age_credit_s: float) -> Need:
        return Need(
            holder=f"{self.run_id}/{job.stream}/{job.step}",
            resource_class=job.resource_class,
            cap=job.cap,
            locks=job.locks,
            priority=job.priority,
            age_credit_s=age_credit_s,
            labels={
                "run_id": self.run_id,
                "stream": job.stream,
                "step": job.step,
                "agent": job.agent,
                **job.labels,
            },
        )

    async def _hold(
        self,
        job: StepJob,
        given: Grant | None,
        drain: Drain,
        log: EventLog,
        attempt: int,
        age_credit_s: float,
        on_queued: Callable[[], None] | None,
    ) -> tuple[Grant, tuple[int, ...]]:
        """The attempt's grant (``given`` by the queue, else acquired now) and its GPUs."""
        if given is not None and job.gpus == 0:
            # Nothing left to wait for, so no drain scope: only a cancel meanwhile stops it
            # (the grant is given back and the end recorded, as _before_start does).
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException as exc:
                await self.release(given)
                if isinstance(exc, anyio.get_cancelled_exc_class()):
                    cancelled_before_start(log, attempt)
                raise
            return given, ()
        with self._before_start(drain, log, attempt):
            if given is None:
                grant = await self.coordinator.acquire(
                    self._need(job, age_credit_s),
                    timeout_s=job.lock_timeout_s,
                    on_blocked=self._on_blocked(log, attempt, on_queued),
                )
                if on_queued is not None:
                    on_queued()
            else:
                grant = given
                await _unless_cancelled(grant, self)
            return grant, await self._take_gpus(job, grant, log, attempt)

    @staticmethod
    @contextmanager
    def _before_start(drain: Drain | None, log: EventLog, attempt: int) -> Iterator[None]:
        """``drain.interruptible()`` (None: no drain to heed); a cancel meanwhile (queued,
        waiting for locks, backing off) records the step's end, so no step stays
        ``waiting`` once its run is over."""
        try:
            if drain is None:
                yield
                return
            with drain.interruptible():
                yield
        except anyio.get_cancelled_exc_class():
            cancelled_before_start(log, attempt)
            raise

    def _on_blocked(
        self, log: EventLog, attempt: int, on_queued: Callable[[], None] | None = None
    ) -> Any:
        def blocked(blockers: tuple[Blocker, ...]) -> None:
            if on_queued is not None:
                on_queued()
            log.emit(
                "step_waiting",
                attempt=attempt,
                # Holders of this run are named without the run id, for reading.
                waiting_for=[b.describe().replace(f"{self.run_id}/", "") for b in blockers],
                blocked_on=[{"resource": b.resource, "holders": list(b.holders)} for b in blockers],
            )

        return blocked

    async def _take_gpus(
        self, job: StepJob, grant: Grant, log: EventLog, attempt: int
    ) -> tuple[int, ...]:
        """The job's GPUs, taken once its need is granted (so a GPU is never held while its
        step waits for locks). Whatever goes wrong, the grant is given back first."""
        if job.gpus == 0:
            return ()
        try:
            if self.gpus is None:
                raise GpuUnavailable("this scheduler was given no GPU allocator")
            return await self.gpus.allocate(
                grant.need.holder,
                job.gpus,
                exclusive=job.gpu_exclusive,
                timeout_s=job.lock_timeout_s,
                on_blocked=lambda held: log.emit(
                    "step_waiting",
                    attempt=attempt,
                    waiting_for=[
                        f"GPU {i} (held by {', '.join(h)})".replace(f"{self.run_id}/", "")
                        for i, h in held.items()
                    ],
                    blocked_on=[
                        {"resource": f"gpu:{i}", "holders": list(h)} for i, h in held.items()
                    ],
                ),
            )
        except BaseException:
            await self.release(grant)
            raise

    def _without_gpu(self, job: StepJob, attempt: int, exc: GpuError, log: EventLog) -> StepOutcome:
        """A step that cannot have its GPUs: skipped (``on_no_gpu: skip`` and there is no
        GPU at all) or failed, with the "no GPU" evidence; never retried."""
        if isinstance(exc, GpuUnavailable):
            result = no_gpu_result(exc.reason, exc.fix, skip=job.on_no_gpu == "skip")
        else:  # asks for more GPUs than the machine has: a plan error, never skipped
            result = ActionResult(ok=False, summary=str(exc), details={"skipped": False})
        status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
        log.emit(
            "step_finished",
            attempt=attempt,
            status=status.value,
            duration_s=0.0,
            reason=strip_controls(result.summary),
            skipped=bool(result.details.get("skipped")),
            metrics=dict(result.metrics),
        )
        self._record_evidence(job, attempt, status, result, log)
        return StepOutcome(status, result.summary, attempt, result)

    async def _attempt(
        self,
        job: StepJob,
        grant: Grant,
        gpus: tuple[int, ...],
        attempt: int,
        waited_s: float,
        log: EventLog,
        before_release: Callable[[], Awaitable[None]] | None = None,
    ) -> StepOutcome:
        """Have the driver perform the step once while holding ``grant``; always record the
        end and release."""
        ctx = ActionContext(
            run_id=self.run_id,
            stream=job.stream,
            step=job.step,
            agent=job.agent,
            attempt=attempt,
            fences=dict(grant.fences),
            env={**self._env(job, attempt, grant), **(cuda_env(gpus) if gpus else {})},
            workdir=self.config.workdir,
            kill_grace_s=self.config.kill_grace_s,
            state=self.coordinator,
            file_roots=self.config.file_roots,
        )
        # Secrets of the step's environment and parameters are masked in every event from now.
        secrets = [*self._env_secrets, *self._param_secrets(job.task.params)]
        if secrets:
            log.redactor.add(secrets)
        call = DriverCall(
            params=job.task.params,
            context=ctx,
            grant=StepGrant(
                locks=job.locks, fences=ctx.fences, gpus=gpus, deadline_s=job.timeout_s
            ),
            events=log,
            package=job.task.package,
        )
        started = loop_time()
        started_seq = log.emit_seq(
            "step_started",
            attempt=attempt,
            fences=dict(grant.fences),
            waited_s=round(waited_s, 6),
            timeout_s=job.timeout_s,
            **({"gpus": list(gpus)} if gpus else {}),
        )
        status, result, reason = StepStatus.CANCELLED, None, "cancelled"
        retryable = True
        try:
            await log.durable(started_seq)  # write-ahead: stored before the action starts
            with anyio.move_on_after(job.timeout_s) as timer:
                if grant.leased:
                    status, result, reason, retryable = await self._call_watching(grant, call, job)
                else:
                    status, result, reason, retryable = await self._call(call, job)
            if timer.cancelled_caught:
                status, reason = StepStatus.TIMED_OUT, f"timed out after {job.timeout_s:g}s"
        except StoreUnavailable as exc:  # its start was not stored in time: never started
            status, reason = StepStatus.FAILED, f"not started: {exc}"
        except LockLost as exc:  # stopped: what it did under a lost lease is no result
            status, reason = StepStatus.FAILED, str(exc)
        finally:
            reason = strip_controls(reason)  # agent text: no terminal escapes in events
            fields: dict[str, Any] = {
                "attempt": attempt,
                "status": status.value,
                "duration_s": round(loop_time() - started, 6),
                "reason": reason,
            }
            if result is not None:
                fields.update(
                    exit_code=result.exit_code,
                    metrics=dict(result.metrics),
                    output_sha256=result.output_sha256,
                    output_bytes=result.output_bytes,
                    undo_available=result.undo is not None,
                )
                if result.details.get("claimed") or result.details.get("claimed_metrics"):
                    claimed = result.details.get("claimed_metrics") or sorted(result.metrics)
                    fields["claimed_metrics"] = list(claimed)  # for the gate after a resume
                fields.update(output_fields(strip_controls(result.output)))  # every step's, kept
                if result.usage:  # model calls only (LLM drivers): others' events are unchanged
                    fields["usage"] = result.usage.as_event()
            log.emit("step_finished", **fields)
            if result is not None:
                self._record_evidence(job, attempt, status, result, log)
            if gpus and self.gpus is not None:
                self.gpus.release(grant.need.holder)
            try:
                if status is StepStatus.SUCCEEDED and before_release is not None:
                    await before_release()
            finally:
                await self.release(grant)
        return StepOutcome(status, reason, attempt, result, retryable=retryable)

    @staticmethod
    def _record_evidence(
        job: StepJob, attempt: int, status: StepStatus, result: ActionResult, log: EventLog
    ) -> None:
        for evidence in result.evidence:
            log.emit(
                "evidence_collected",
                attempt=attempt,
                step_status=status.value,
                provides=provides_of(evidence, job.evidence_ids),
                id=evidence.id,
                check=evidence.check,
                source=evidence.source,
                detail=dict(evidence.detail),
                excerpt=strip_controls(evidence.excerpt),
                sha256=evidence.sha256,
                metrics=dict(evidence.metrics),
                verified=evidence.verified,
                collected_at=evidence.at,
            )

    async def _call(
        self, call: DriverCall, job: StepJob
    ) -> tuple[StepStatus, ActionResult | None, str, bool]:
        """Have the driver perform ``call``; its failures (and its bugs) become a failed
        status. The last item says whether another attempt may help
        (``ActionFailed(retryable=False)``)."""
        try:
            result = await job.task.driver.perform(call)
        except ActionFailed as exc:
            return StepStatus.FAILED, None, exc.reason, exc.retryable
        except CoordinationError as exc:
            return StepStatus.FAILED, None, str(exc), True
        except Exception as exc:  # an action's bug must not take the run down
            _diag.exception("action_crashed", action=job.task.name, step=job.step)
            return StepStatus.FAILED, None, f"action raised {type(exc).__name__}: {exc}", True
        status = StepStatus.SUCCEEDED if result.ok else StepStatus.FAILED
        return status, result, result.summary, True

    async def _call_watching(
        self, grant: Grant, call: DriverCall, job: StepJob
    ) -> tuple[StepStatus, ActionResult | None, str, bool]:
        """:meth:`_call` under the grant's lease: cancelled at once if the lease is lost, and
        its processes ended by the watchdog (even while this daemon is frozen) if the lease
        is not renewed in time. Either way it raises :class:`LockLost`."""
        outcome: tuple[StepStatus, ActionResult | None, str, bool] = (
            StepStatus.FAILED,
            None,
            "",
            True,
        )
        with step_lease(grant.need.holder):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_lost, grant, tg.cancel_scope)
                outcome = await self._call(call, job)
                tg.cancel_scope.cancel()
        if grant.lost.is_set() or lease_lapsed(grant.need.holder):
            need = grant.need
            held = {lock: grant.fences.get(lock) for lock in need.locks}
            raise LockLost(held or {f"class:{need.resource_class}": None})
        return outcome

    def _param_secrets(self, params: BaseModel) -> list[str]:
        """The secrets of a step's parameters; none, without dumping them, when its
        parameters model can hold no text (only numbers and flags, no extra fields: the
        sleep and no-op steps of a large plan)."""
        kind = type(params)
        textless = self._textless_params.get(kind)
        if textless is None:
            textless = self._textless_params[kind] = textless_params(kind)
        return [] if textless else param_secrets(params.model_dump())

    def _env(self, job: StepJob, attempt: int, grant: Grant) -> dict[str, str]:
        env = dict(self.config.env)
        env.update(
            ORCH_RUN_ID=self.run_id,
            ORCH_PLAN=self.plan_name,
            ORCH_STREAM=job.stream,
            ORCH_STEP=job.step,
            ORCH_AGENT=job.agent,
            ORCH_ATTEMPT=str(attempt),
        )
        for lock, fence in grant.fences.items():
            env[f"ORCH_FENCE_{_env_name(lock)}"] = str(fence)
        return env


async def _unless_cancelled(grant: Grant, runner: StepRunner) -> None:
    """Give ``grant`` back and raise if this task is cancelled already (its stream was cut
    while the grant was on its way): a step granted then never starts."""
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await runner.release(grant)
        raise


def _env_name(resource: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in resource).upper()


async def _cancel_when_lost(grant: Grant, scope: anyio.CancelScope) -> None:
    await grant.lost.wait()
    scope.cancel()
