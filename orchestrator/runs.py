"""Running one plan: run ids, the coordinator for the settings, the event files, and
:func:`assemble_run`, the one way a run is put together.

Shared by ``orchestrator run`` (in-process, :func:`execute_plan`) and the daemon
(``RunManager``): both build a coordinator from the settings, and :func:`assemble_run` binds
an event log to the run's sinks (plus a relay into the coordinator's event stream, if it has
one) and hands it to the scheduler. Each event file is at :func:`events_path_for`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from agents.gpus import GpuAllocator
from agents.registry import ActionRegistry
from foundation.errors import OrchestratorError
from foundation.status import RunStatus
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.event_relay import EventRelay, relay_for
from orchestrator.events import Durability, EventLog, EventSink, Redactor
from orchestrator.gc_tuning import freeze_loaded, tune_gc
from orchestrator.scheduler import PriorState, RunResult, Scheduler, SchedulerConfig
from orchestrator.settings import Settings
from orchestrator.store import IN_PROCESS_ORIGIN, RunRecord, RunStore, open_store
from streams.model import Plan

__all__ = [
    "IN_PROCESS_ORIGIN",
    "AssembledRun",
    "RunRecorder",
    "assemble_run",
    "events_path_for",
    "execute_plan",
    "freeze_loaded",
    "new_run_id",
    "open_coordinator",
    "record_run",
    "relay_for",
    "tune_gc",
]

_log = structlog.get_logger("orchestrator.runs")


def new_run_id() -> str:
    """A sortable, unique run id: ``20261121T161500Z-3f9a1c``."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def events_path_for(settings: Settings, run_id: str) -> Path:
    """Where a run's JSON-lines event log goes by default."""
    return settings.state_dir / "runs" / run_id / "events.jsonl"


@asynccontextmanager
async def open_coordinator(settings: Settings) -> AsyncIterator[Coordinator]:
    """The coordination backend the settings ask for (in-process unless a Redis URL is set)."""
    if settings.redis_url is not None:
        from orchestrator.coordination.redis import RedisCoordinator

        async with RedisCoordinator(
            settings.redis_url.get_secret_value(),
            namespace=settings.namespace,
            lease_s=settings.lease_s,
            aging_s=settings.aging_s,
            starve_after_s=settings.starve_after_s,
            connect_timeout_s=settings.redis_connect_timeout_s,
            op_timeout_s=settings.redis_op_timeout_s,
            outage_grace_s=settings.redis_outage_grace_s,
            events_maxlen=settings.redis_events_maxlen,
            retention_s=settings.redis_retention_s,
        ) as coordinator:
            yield coordinator
        return
    yield InProcessCoordinator(aging_s=settings.aging_s, starve_after_s=settings.starve_after_s)


class RunRecorder:
    """An :class:`EventSink` that stores an in-process run's events while it runs, a batch
    at a time (whatever was emitted since the last write), as the daemon would have.

    A batch is written :attr:`BATCH_INTERVAL_S` after the last one, or as soon as
    :attr:`BATCH_MAX_EVENTS` are waiting, whichever comes first: few commits, and a bounded
    number of events held in memory for the store (a 10,000-step run emits ~37,500).

    A store that cannot be reached costs the history, not the run: it is logged once
    (``run_not_recorded``) and the rest of the run's events are dropped (the events file
    still has all). The run is stored with origin ``orchestrator run``, which a daemon
    sharing the store never takes for one to resume.
    """

    BATCH_INTERVAL_S = 0.2
    BATCH_MAX_EVENTS = 1000

    def __init__(self, run_id: str, timeout_s: float) -> None:
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.failed = False
        self.store: RunStore | None = None  # set once the run is created in it
        self._pending: list[Mapping[str, Any]] = []
        self._wake = anyio.Event()
        self._full = anyio.Event()

    def emit(self, event: Mapping[str, Any]) -> None:
        if not self.failed:
            pending = self._pending
            pending.append(event)
            if len(pending) == 1:
                self._wake.set()
            elif len(pending) >= self.BATCH_MAX_EVENTS:
                self._full.set()

    async def write_forever(self) -> None:
        """Write what is pending, batch by batch, until cancelled (a task of the caller's
        for the run's length)."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            with anyio.CancelScope(shield=True):  # a batch taken is a batch written
                await self._write_batch()
            # Batches of at least this long a stretch (no commit per event-loop tick), unless
            # a full batch is waiting already.
            if len(self._pending) < self.BATCH_MAX_EVENTS:
                with anyio.move_on_after(self.BATCH_INTERVAL_S):
                    await self._full.wait()

    async def write(self) -> None:
        """Write every pending event now."""
        while self.store is not None and self._pending and not self.failed:
            await self._write_batch()

    async def _write_batch(self) -> None:
        store = self.store
        if store is None or not self._pending or self.failed:
            return
        batch, self._pending = self._pending, []
        self._full = anyio.Event()  # set again only once the next batch is full
        try:
            with anyio.fail_after(self.timeout_s):
                await store.append_events(self.run_id, batch)
        except (OrchestratorError, TimeoutError) as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        self._pending = []
        _log.warning("run_not_recorded", run_id=self.run_id, error=str(exc))


@asynccontextmanager
async def record_run(
    settings: Settings,
    plan: Plan,
    plan_text: str,
    workdir: Path,
    run_id: str,
    timeout_s: float = 30.0,
) -> AsyncIterator[RunRecorder]:
    """Store an in-process run and its events while it runs, into the daemon's store.

    Yields the sink to give the run, whose :meth:`RunRecorder.write_forever` the caller
    runs as a task meanwhile; on exit, what is left is written (shielded, each batch
    within ``timeout_s``). A store that cannot be reached is logged and otherwise ignored.
    """
    recorder = RunRecorder(run_id, timeout_s)
    async with AsyncExitStack() as stack:
        try:
            with anyio.fail_after(timeout_s):
                store = await stack.enter_async_context(
                    open_store(settings.store_url(), state_dir=settings.state_dir)
                )
                await store.create_run(
                    RunRecord(
                        run_id=run_id,
                        plan=plan.plan,
                        plan_source=plan_text,
                        workdir=workdir,
                        status=RunStatus.RUNNING,
                        options={"origin": IN_PROCESS_ORIGIN},
                    )
                )
        except (OrchestratorError, TimeoutError) as exc:
            recorder._fail(exc)
            yield recorder
            return
        recorder.store = store
        try:
            yield recorder
        finally:
            with anyio.CancelScope(shield=True):
                await recorder.write()


@dataclass(frozen=True, slots=True)
class AssembledRun:
    """A run ready to start: its scheduler, the event log it emits to, and the relay into
    the coordinator's event stream (None without one), whose task the caller runs."""

    scheduler: Scheduler
    events: EventLog
    relay: EventRelay | None


def assemble_run(
    plan: Plan,
    *,
    run_id: str,
    settings: Settings,
    coordinator: Coordinator,
    registry: ActionRegistry,
    sinks: Sequence[EventSink],
    workdir: Path,
    prior: PriorState | None = None,
    gpus: GpuAllocator | None = None,
    first_seq: int = 1,
    durability: Durability | None = None,
) -> AssembledRun:
    """Put a run together: an event log over ``sinks`` (and a relay, when the coordinator
    has an event stream) with the settings' secrets masked, and a scheduler for ``plan``
    with the settings' step environment and kill grace. ``prior`` resumes a run whose
    stored events end at ``first_seq - 1``; ``durability`` makes ``step_started`` durable
    before a step starts; ``gpus`` is an allocator shared with other runs."""
    relay = relay_for(coordinator, run_id)
    events = EventLog(
        run_id,
        [*sinks, *([relay] if relay else [])],
        redactor=Redactor(settings.secrets()),
        first_seq=first_seq,
        durability=durability,
    )
    scheduler = Scheduler(
        plan,
        run_id=run_id,
        coordinator=coordinator,
        registry=registry,
        events=events,
        prior=prior,
        gpus=gpus,
        config=SchedulerConfig(
            workdir=workdir,
            env=settings.step_env(),
            kill_grace_s=settings.kill_grace_s,
            aging_s=settings.aging_s,
        ),
    )
    return AssembledRun(scheduler, events, relay)


async def execute_plan(
    plan: Plan,
    *,
    run_id: str,
    settings: Settings,
    coordinator: Coordinator,
    registry: ActionRegistry,
    sinks: Sequence[EventSink],
    workdir: Path,
    on_scheduler: Callable[[Scheduler], None] | None = None,
) -> RunResult:
    """Run ``plan`` once with events going to ``sinks`` (and, with Redis, to the run's
    Redis event stream); return how it ended. ``on_scheduler`` is given the scheduler
    before it starts (to abandon its rollbacks on a second interrupt)."""
    run = assemble_run(
        plan,
        run_id=run_id,
        settings=settings,
        coordinator=coordinator,
        registry=registry,
        sinks=sinks,
        workdir=workdir,
    )
    scheduler, relay = run.scheduler, run.relay
    if on_scheduler is not None:
        on_scheduler(scheduler)
    if relay is None:
        return await scheduler.run()
    async with anyio.create_task_group() as tg:
        tg.start_soon(relay.run)
        try:
            result = await scheduler.run()
        finally:
            relay.close()  # the relay task writes what is left, then the group ends
    return result
