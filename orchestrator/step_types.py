"""What the step runner works with: a job, its outcome, its queue entry, the drain switch.

Apart from :mod:`orchestrator.step_runner` (which re-exports them) to keep modules small.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import anyio
from pydantic import BaseModel

from agents.base import ActionResult
from agents.drivers import DriverTask
from foundation.clock import loop_time
from orchestrator.coordination.base import Grant, Ticket
from orchestrator.events import EventLog

__all__ = [
    "Drain",
    "Queued",
    "StepClock",
    "StepJob",
    "StepOutcome",
    "StepRunnerConfig",
    "StepStatus",
    "Suspended",
    "cancelled_before_start",
    "textless_params",
]


class StepStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # was running when the daemon stopped; not safe to re-run


class Suspended(Exception):
    """Control flow: the run is draining, so this job starts no new attempt."""


class Drain:
    """Once started, stops every job from starting a new attempt and wakes every job that
    is queueing or backing off, so a draining run only waits for running actions."""

    def __init__(self) -> None:
        self.started = False
        self._scopes: set[anyio.CancelScope] = set()
        self._callbacks: dict[int, Callable[[], None]] = {}

    def start(self) -> None:
        self.started = True
        for scope in list(self._scopes):
            scope.cancel()
        for callback in list(self._callbacks.values()):
            callback()

    @contextmanager
    def calling(self, callback: Callable[[], None]) -> Iterator[None]:
        """Within the body, :meth:`start` also calls ``callback`` (for jobs queued without a
        task: their owner withdraws them)."""
        key = id(callback)
        self._callbacks[key] = callback
        try:
            yield
        finally:
            self._callbacks.pop(key, None)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Run the body unless draining; raise Suspended if draining starts meanwhile."""
        if self.started:
            raise Suspended
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                yield
            finally:
                self._scopes.discard(scope)
        if scope.cancelled_caught and self.started:
            raise Suspended


@dataclass(frozen=True, slots=True)
class StepJob:
    """One step to run: who performs which task (driver and parameters), holding which
    need."""

    stream: str
    step: str
    agent: str
    task: DriverTask
    resource_class: str
    cap: int | None
    locks: tuple[str, ...]
    priority: int
    timeout_s: float
    retries: int
    lock_timeout_s: float | None
    first_attempt: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    evidence_ids: tuple[str, ...] = ()
    drainable: bool = True  # undo and rollback steps run on through a drain
    gpus: int = 0
    gpu_exclusive: bool = True
    on_no_gpu: str = "fail"  # or "skip"


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """A step's final status. ``queued_s``: seconds it waited for its slot, locks and GPUs
    (over all attempts, lock-timeout re-queues included); ``service_s``: the rest of its
    time from first queueing to the end (its attempts and their retry backoff). History
    keeps them apart so that predictions do not count contention twice."""

    status: StepStatus
    reason: str
    attempts: int
    result: ActionResult | None = None
    queued_s: float = 0.0
    service_s: float = 0.0
    retryable: bool = True  # False: the action said another attempt cannot help


@dataclass(slots=True)
class Queued:
    """A job's first attempt standing in the coordinator's queue without a task; ``grant``
    is set when it is granted (then its task must be started: :meth:`StepRunner.run` with
    ``queued=``)."""

    job: StepJob
    log: EventLog
    queued_at: float
    ticket: Ticket | None = None
    grant: Grant | None = None

    def cancelled(self) -> None:
        """Record the end of a job that never started (its run or stream was cancelled)."""
        cancelled_before_start(self.log, self.job.first_attempt)


def cancelled_before_start(log: EventLog, attempt: int) -> None:
    """Record that ``attempt`` ended cancelled before it started."""
    log.emit(
        "step_finished",
        attempt=attempt,
        status=StepStatus.CANCELLED.value,
        duration_s=0.0,
        reason="cancelled before it started",
        started=False,
    )


@dataclass(frozen=True, slots=True)
class StepRunnerConfig:
    workdir: Path
    env: Mapping[str, str]
    kill_grace_s: float
    release_timeout_s: float
    backoff_s: float
    backoff_max_s: float
    file_roots: Mapping[str, Path] = field(default_factory=dict)


@dataclass(slots=True)
class StepClock:
    """Splits a step's time into queueing and service (see :class:`StepOutcome`)."""

    entered: float
    queued_s: float = 0.0

    def stamp(self, outcome: StepOutcome) -> StepOutcome:
        total = loop_time() - self.entered
        queued = min(self.queued_s, total)
        return StepOutcome(  # not dataclasses.replace: it inspects the fields on each call
            outcome.status,
            outcome.reason,
            outcome.attempts,
            outcome.result,
            queued_s=round(queued, 6),
            service_s=round(total - queued, 6),
            retryable=outcome.retryable,
        )


def textless_params(model: type[BaseModel]) -> bool:
    """Whether ``model``'s values can only be numbers, flags or None (so no secret)."""
    if model.model_config.get("extra") == "allow":
        return False
    return all(_numeric(field.annotation) for field in model.model_fields.values())


def _numeric(annotation: Any) -> bool:
    if annotation in (int, float, bool, type(None)):
        return True
    if get_origin(annotation) in (Union, UnionType):
        return all(_numeric(arg) for arg in get_args(annotation))
    return False
