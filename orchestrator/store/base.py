"""The run store's interface: what the daemon keeps about every run, behind one Protocol.

A run is submitted (``queued``), started (``running``) and ends ``succeeded``, ``failed``,
``cancelled`` or ``interrupted`` (the daemon stopped while it ran and did not resume it).
Its events, exactly as :mod:`orchestrator.events` emitted them, are appended in batches;
each batch also updates, in the same transaction, the state derived from it: the run's
status and times, one row per stream and per step (its latest attempt), and the stream's
history row when it reaches a verdict. Appending is idempotent on ``(run_id, seq)``, so
replaying a batch after a crash is harmless.

Stream history is keyed by the stream's signature
(:meth:`streams.model.StreamSpec.signature`: its id, methodology and actions), so it
accumulates across runs and plans, whichever way they ran (daemon or ``orchestrator run``).

Backends: :class:`~orchestrator.store.sqlite.SqliteStore` (a file in the state directory,
the default) and :class:`~orchestrator.store.postgres.PostgresStore` (asyncpg); open either
with :func:`orchestrator.store.open_store`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from foundation.status import FINISHED_STATUSES, RUN_STATUSES, UNFINISHED_STATUSES, RunStatus

if TYPE_CHECKING:
    from orchestrator.step_output import StepOutput

__all__ = [
    "FINISHED_STATUSES",
    "IN_PROCESS_ORIGIN",
    "RUN_STATUSES",
    "UNFINISHED_STATUSES",
    "HistoryRecord",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StepRecord",
    "StreamRecord",
    "check_status",
    "utc_now",
]


#: The ``options["origin"]`` of a run recorded by ``orchestrator run``: a daemon never
#: resumes it (see :meth:`RunStore.unfinished_runs`), since the process that runs it may
#: still be running.
IN_PROCESS_ORIGIN = "orchestrator run"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run as submitted, and its state so far.

    ``plan_source`` is the plan file's text as submitted (the run can be re-read and resumed
    from it even if the file changes); ``options`` are the submission's options (JSON-able).
    ``last_seq`` is the highest event ``seq`` stored: a resumed run continues after it.
    """

    run_id: str
    plan: str
    plan_source: str
    workdir: Path
    plan_path: Path | None = None
    status: RunStatus = RunStatus.QUEUED
    created_at: datetime = field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    last_seq: int = 0


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A stream's state: ``pending`` until ``stream_started`` (``running``), then the
    status of its ``stream_finished`` (``succeeded``, ``failed``, ``skipped``, ``cancelled``)."""

    run_id: str
    stream: str
    status: str
    reason: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """A step's latest attempt: ``queued``, ``waiting``, ``running``, ``retrying``, then the
    status of its ``step_finished`` (``succeeded``, ``failed``, ``timed_out``,
    ``cancelled``), or ``skipped`` (``attempt`` 0: it never ran).

    A new attempt clears the previous one's times, reason and exit code; the events keep
    every attempt.
    """

    run_id: str
    stream: str
    step: str
    status: str
    attempt: int = 0
    agent: str | None = None
    resource_class: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    reason: str = ""
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One past verdict of a stream: ``status`` ``succeeded`` or ``failed`` (skipped and
    cancelled streams, and streams failed by a daemon stop under a step, are not history),
    ``duration_s`` from its ``stream_started`` to its ``stream_finished`` (queueing, its
    gate and any rollback included; None if its start is unknown; for a resumed stream,
    since the resume), and its gate's ``confidence`` if it had a gate."""

    signature: str
    run_id: str
    stream: str
    plan: str
    methodology: str | None
    status: str
    duration_s: float | None
    gate_confidence: float | None
    finished_at: datetime
    #: The stream's longest chain of step service times, and its steps' queueing (caps,
    #: locks, GPUs); None for verdicts recorded before they were (see service_time).
    service_s: float | None = None
    queued_s: float | None = None


class RunStore(Protocol):
    """Where runs live. Every method has a deadline; failures raise
    :class:`~orchestrator.store.StoreError` (:class:`~orchestrator.store.StoreUnavailable`
    when the store cannot be reached or answer in time). All writes are idempotent, and
    settled when they return: a write that is cancelled finishes first (within its
    deadline), so it either took effect or never started.

    Appends for one run should come from one writer, in seq order (as the event log emits
    them); concurrent appends to different runs are fine."""

    @property
    def where(self) -> str:
        """The store's location for logs and errors: a path, or a DSN without its password."""
        ...

    async def create_run(self, run: RunRecord) -> None:
        """Record a new run. Creating the same run again is a no-op; another run under an
        existing ``run_id`` raises StoreError."""
        ...

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        """Store ``events`` of ``run_id`` and update the derived state, in one transaction.

        Events already stored (same ``seq``) are skipped and change nothing. Returns how many
        were new. Raises StoreError for an unknown run or a malformed event (no int ``seq``,
        no ``event`` name, an unparseable ``ts``, or another run's ``run_id``).
        """
        ...

    async def set_run_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str = "",
        expect: Collection[RunStatus] | None = None,
    ) -> bool:
        """Set the run's status (and ``started_at``/``finished_at`` where unset) unless
        ``expect`` is given and the current status is not in it. Returns whether it changed
        the run; raises StoreError for an unknown run."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The run, or None if there is no such run."""
        ...

    async def list_runs(
        self,
        *,
        limit: int = 50,
        statuses: Collection[RunStatus] | None = None,
        plan: str | None = None,
        since: datetime | None = None,
    ) -> list[RunRecord]:
        """Up to ``limit`` runs, newest first, optionally only those in ``statuses``, of
        plan id ``plan``, and created at or after ``since`` (naive: UTC). A run's creation
        is the earliest of its created, started and finished times: ``orchestrator run``
        records its run only after its first events."""
        ...

    async def unfinished_runs(self) -> list[RunRecord]:
        """Runs still ``queued`` or ``running``, oldest first: what a restarted daemon
        must resume or mark ``interrupted``. Runs recorded by ``orchestrator run`` (origin
        :data:`IN_PROCESS_ORIGIN`, stored while that process runs them) are never listed."""
        ...

    async def get_streams(self, run_id: str) -> list[StreamRecord]:
        """The run's streams in plan order as far as known (by first event), else by name."""
        ...

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        """The run's steps, by stream and then in the order they first appeared."""
        ...

    async def read_events(
        self, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` events with ``seq > after_seq``, in ``seq`` order, as emitted."""
        ...

    async def step_outputs(
        self, run_id: str, *, stream: str | None = None, step: str | None = None
    ) -> list[StepOutput]:
        """The stdout/stderr tails of every finished attempt of the run's steps (of
        ``stream`` and ``step`` only, if given), in the order they finished; ``[]`` for an
        unknown run."""
        ...

    async def stream_history(
        self, signatures: Collection[str], *, limit: int = 1000
    ) -> Mapping[str, list[HistoryRecord]]:
        """The latest ``limit`` verdicts of each stream signature, oldest first; every
        signature asked for is a key (with ``[]`` when it has no history)."""
        ...

    async def lock_fences(self) -> dict[str, int]:
        """The highest fencing token recorded for each lock (by ``step_started`` events)."""
        ...

    async def aclose(self) -> None:
        """Release connections; further calls raise StoreError."""
        ...


def check_status(status: str) -> RunStatus:
    """``status`` as a RunStatus, or ValueError."""
    if status not in RUN_STATUSES:
        raise ValueError(f"unknown run status {status!r}; known: {', '.join(RUN_STATUSES)}")
    return RunStatus(status)
