"""The daemon's runs: start, resume, cancel, drain, and their event pipelines.

Every event a run's scheduler emits goes through an :class:`EventPipeline`: it is written to
the run store first (batched, in order, in one transaction per batch), and only then applied
to the live view that ``status``/``agents`` read and sent to watchers. So nothing is reported
that the store does not have, and a restarted daemon sees at least what anyone was told.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from agents.gpus import GpuAllocator
from agents.registry import ActionRegistry
from foundation.errors import OrchestratorError
from foundation.status import RunStatus
from orchestrator.coordination.base import Coordinator
from orchestrator.coordination.memory import InProcessCoordinator
from orchestrator.event_relay import EventRelay
from orchestrator.events import EventSink, JsonlSink, kept
from orchestrator.progress import RunView
from orchestrator.runs import assemble_run, events_path_for, new_run_id
from orchestrator.scheduler import PriorState, RunResult, Scheduler
from orchestrator.settings import Settings
from orchestrator.store import DiskFull, RunRecord, RunStore, StoreUnavailable
from streams.loader import load_plan_text
from streams.model import Plan

__all__ = ["ActiveRun", "EventPipeline", "RunManager", "Subscription"]

_log = structlog.get_logger("orchestrator.runs")

#: Events a slow watcher may fall behind by before it is dropped (it can re-subscribe).
_SUBSCRIBER_BUFFER = 10_000
#: Backoff while the store cannot be written: first retry, longest pause.
_STORE_RETRY_FIRST_S, _STORE_RETRY_MAX_S = 0.1, 5.0
#: How long an ending run waits for its events to be stored (the rest is resumed later).
_FLUSH_TIMEOUT_S = 30.0
#: How long an ending run waits for its relay to write what is left to the event stream.
_RELAY_DRAIN_S = 10.0
#: How long ``cancel`` waits for a run to record its end.
_CANCEL_WAIT_S = 60.0
#: After a drain's cancel, each run gets ``kill_grace_s`` plus this to record its end.
_DRAIN_MARGIN_S = 5.0
#: At most one garbage collection per this long when runs end (see _collect_garbage).
_GC_EVERY_S = 1.0


class EventPipeline:
    """Store first, then the live view, the run's event file and the watchers.

    It is also the run's :class:`~orchestrator.events.Durability`: :meth:`wait` returns
    once an event is stored, so a step's ``step_started`` is durable before its action
    starts (write-ahead). Waiters share the commits of the ordinary batches. While the store
    cannot be written (down, or its disk full) the batch is kept and retried; a waiter gives
    up after ``store_wait_s`` with :class:`StoreUnavailable`, and nothing stored is lost.
    """

    def __init__(
        self,
        run_id: str,
        store: RunStore,
        view: RunView,
        file: JsonlSink,
        *,
        store_wait_s: float = 120.0,
    ) -> None:
        self.run_id = run_id
        self.store = store
        self.view = view
        self.file = file
        self.store_wait_s = store_wait_s
        self.subscribers: set[MemoryObjectSendStream[dict[str, Any]]] = set()
        self._pending: list[dict[str, Any]] = []
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._stored = anyio.Event()
        self.stored_seq = 0
        #: The store's last error while it cannot be written; None when it can.
        self.unavailable: OrchestratorError | None = None

    def emit(self, event: Any) -> None:  # an EventSink: must not block or raise
        self._pending.append(kept(event))
        self._idle = anyio.Event() if self._idle.is_set() else self._idle
        self._wake.set()

    async def wait(self, seq: int) -> None:
        """Return once event ``seq`` is stored; StoreUnavailable after ``store_wait_s``."""
        if self.stored_seq >= seq:
            return
        with anyio.move_on_after(self.store_wait_s):
            while self.stored_seq < seq:
                await self._stored.wait()
            return
        cause = f": {self.unavailable}" if self.unavailable is not None else ""
        _log.error(
            "step_not_started",
            run_id=self.run_id,
            seq=seq,
            store_wait_s=self.store_wait_s,
            error=str(self.unavailable or ""),
        )
        raise StoreUnavailable(
            f"of run {self.run_id}",
            f"event {seq} was not stored within store_wait_s={self.store_wait_s:g}s{cause}",
            "bring the store back (free its disk, restart its server) or raise "
            "ORCH_STORE_WAIT_S; what it has stored is kept",
        )

    async def write_forever(self) -> None:
        """Persist pending events in order; retries while the store is unreachable."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._store(batch)
                self.stored_seq = max(self.stored_seq, *(int(e.get("seq", 0)) for e in batch))
                self._stored.set()
                self._stored = anyio.Event()
                for event in batch:
                    self.view.apply(event)
                    self.file.emit(event)
                    for subscriber in list(self.subscribers):
                        try:
                            subscriber.send_nowait(event)
                        except (
                            anyio.WouldBlock,
                            anyio.BrokenResourceError,
                            anyio.ClosedResourceError,
                        ):
                            self.subscribers.discard(subscriber)  # too slow or gone
                            subscriber.close()
            self._idle.set()

    async def _store(self, batch: list[dict[str, Any]]) -> None:
        delay = _STORE_RETRY_FIRST_S
        while True:
            try:
                await self.store.append_events(self.run_id, batch)
            except OrchestratorError as exc:
                # The store is down or full: keep the batch, try again; the run is not
                # reported further (and no step starts) until it is stored.
                if self.unavailable is None:
                    _log.warning(
                        "store_unavailable",
                        run_id=self.run_id,
                        error=str(exc),
                        waiting_events=len(batch),
                        store_wait_s=self.store_wait_s,
                    )
                self.unavailable = exc
                await anyio.sleep(delay)
                delay = min(delay * 2, _STORE_RETRY_MAX_S)
                continue
            if self.unavailable is not None:
                self.unavailable = None
                _log.info("store_recovered", run_id=self.run_id, events=len(batch))
            return

    async def flush(self, timeout_s: float) -> None:
        """Wait until everything emitted so far is stored (or ``timeout_s`` passes: then
        what is not stored is logged; the run stays unfinished in the store, and the next
        daemon resumes it from what was stored)."""
        with anyio.move_on_after(timeout_s, shield=True):
            while self._pending or not self._idle.is_set():
                await self._idle.wait()
            return
        _log.error(
            "events_not_stored",
            run_id=self.run_id,
            stored_seq=self.stored_seq,
            waiting_events=len(self._pending),
            error=str(self.unavailable or ""),
        )


@dataclass(eq=False, slots=True)
class ActiveRun:
    run_id: str
    plan: Plan
    scheduler: Scheduler
    pipeline: EventPipeline
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    relay: EventRelay | None = None
    result: RunResult | None = None
    cancel_requested: bool = False


class RunManager:
    """Owns the active runs of one daemon; every run is a task in the daemon's task group."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: RunStore,
        coordinator: Coordinator,
        registry: ActionRegistry,
        task_group: TaskGroup,
        gpus: GpuAllocator | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.coordinator = coordinator
        self.registry = registry
        self.task_group = task_group
        self.gpus = gpus  # one allocator for every run, so exclusivity holds across runs
        self.active: dict[str, ActiveRun] = {}
        self.draining = False
        self._collected_at = -_GC_EVERY_S
        self.sinks: list[EventSink] = []  # more sinks for every run started (metrics, traces)

    # -- starting -------------------------------------------------------------------------

    def parse(self, plan_text: str, label: str) -> Plan:
        """Validate a submitted plan (raises PlanInvalid with every problem)."""
        plan, _ = load_plan_text(plan_text, label, registry=self.registry)
        return plan

    def _workdir(self, run_id: str, plan_path: str) -> Path:
        path = Path(plan_path)
        if path.is_absolute() and path.parent.is_dir():
            return path.parent
        work = self.settings.state_dir / "runs" / run_id / "work"
        try:
            work.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # ENOSPC, EDQUOT, EROFS...: refuse the run, keep serving
            raise DiskFull(
                str(self.settings.state_dir),
                f"cannot create the run's directory {work}: {exc.strerror}",
                "free space on the state directory's file system, then submit again",
            ) from None
        return work

    async def submit(
        self, plan: Plan, plan_text: str, plan_path: str, options: dict[str, Any]
    ) -> str:
        run_id = new_run_id()
        record = RunRecord(
            run_id=run_id,
            plan=plan.plan,
            plan_source=plan_text,
            workdir=self._workdir(run_id, plan_path),
            plan_path=Path(plan_path) if plan_path.startswith("/") else None,
            options=options,
        )
        await self.store.create_run(record)
        self._start(record, plan, prior=None)
        return run_id

    async def restore_fences(self) -> None:
        """An in-process coordinator continues each lock's fencing tokens above the highest
        the store recorded (write-ahead: a token is recorded before any step uses it)."""
        if isinstance(self.coordinator, InProcessCoordinator):
            floors = await self.store.lock_fences()
            self.coordinator.raise_fence_floor(floors)
            if floors:
                _log.info("fences_restored", locks=len(floors), highest=max(floors.values()))

    async def resume_unfinished(self) -> list[str]:
        """Resume every run the store says is unfinished; return their ids (after
        :meth:`restore_fences`, so no resumed step reuses a token)."""
        await self.restore_fences()
        resumed: list[str] = []
        for record in await self.store.unfinished_runs():
            try:
                plan = self.parse(record.plan_source, str(record.plan_path or record.plan))
            except OrchestratorError as exc:
                await self.store.set_run_status(
                    record.run_id, RunStatus.INTERRUPTED, reason=f"cannot resume: {exc}"
                )
                _log.error("run_not_resumable", run_id=record.run_id, error=str(exc))
                continue
            events = [e async for e in self.stored_events(record.run_id)]
            started = any(e.get("event") == "run_started" for e in events)
            prior = PriorState.from_events(events) if started else None
            self._start(record, plan, prior=prior, first_seq=record.last_seq + 1, history=events)
            _log.info("run_resumed", run_id=record.run_id, events=len(events))
            resumed.append(record.run_id)
        return resumed

    async def stored_events(self, run_id: str, after_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        """Every stored event of a run after ``after_seq``, in order, page by page."""
        while True:
            page = await self.store.read_events(run_id, after_seq=after_seq, limit=1000)
            for event in page:
                yield event
            if len(page) < 1000:
                return
            after_seq = int(page[-1]["seq"])

    def _start(
        self,
        record: RunRecord,
        plan: Plan,
        *,
        prior: PriorState | None,
        first_seq: int = 1,
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        view = RunView()
        for event in history or ():
            view.apply(event)
        file = JsonlSink(events_path_for(self.settings, record.run_id))
        pipeline = EventPipeline(
            record.run_id, self.store, view, file, store_wait_s=self.settings.store_wait_s
        )
        pipeline.stored_seq = record.last_seq
        run = assemble_run(
            plan,
            run_id=record.run_id,
            settings=self.settings,
            coordinator=self.coordinator,
            registry=self.registry,
            sinks=[pipeline, *self.sinks],
            workdir=record.workdir,
            prior=prior,
            gpus=self.gpus,
            first_seq=first_seq,
            durability=pipeline,
        )
        active = ActiveRun(record.run_id, plan, run.scheduler, pipeline, relay=run.relay)
        self.active[record.run_id] = active
        self.task_group.start_soon(self._execute, active)

    async def _execute(self, active: ActiveRun) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(active.pipeline.write_forever)
            if active.relay is not None:
                tg.start_soon(active.relay.run)
            try:
                with active.scope:
                    active.result = await active.scheduler.run()
            finally:
                await active.pipeline.flush(timeout_s=_FLUSH_TIMEOUT_S)
                if active.relay is not None:
                    active.relay.close()
                    with anyio.move_on_after(_RELAY_DRAIN_S, shield=True):
                        await active.relay.finished.wait()
                tg.cancel_scope.cancel()
                active.pipeline.file.close()
                for subscriber in list(active.pipeline.subscribers):
                    subscriber.close()
                self.active.pop(active.run_id, None)
                active.done.set()
        _log_run_end(active)
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Collect what the ended run left (its scheduler, tasks and frames form cycles).

        With the thresholds of :func:`~orchestrator.gc_tuning.tune_gc` a full collection
        comes only after millions of allocations, so without this the daemon's RSS grew by
        each run's garbage (+18% over 20 runs of the example). The heap of the daemon's
        start is frozen (:func:`run_daemon`), so this walks only what runs created; at most
        one per ``_GC_EVERY_S`` when many short runs end.
        """
        now = time.monotonic()
        if now - self._collected_at >= _GC_EVERY_S:
            self._collected_at = now
            gc.collect()

    # -- controlling ----------------------------------------------------------------------

    async def cancel(self, run_id: str, timeout_s: float = _CANCEL_WAIT_S) -> str:
        """Cancel an active run and wait (up to ``timeout_s``) until it has recorded its end."""
        active = self.active[run_id]
        active.cancel_requested = True
        active.scope.cancel()
        with anyio.move_on_after(timeout_s):
            await active.done.wait()
        return active.result.status.value if active.result else "cancelled"

    async def drain(self, grace_s: float) -> None:
        """Let running steps finish (up to ``grace_s``), start none; then cancel the rest.

        Drained runs end ``suspended`` and stay unfinished in the store, so the next daemon
        resumes them.
        """
        self.draining = True
        for active in list(self.active.values()):
            active.scheduler.drain()
        with anyio.move_on_after(grace_s):
            for active in list(self.active.values()):
                await active.done.wait()
        for active in list(self.active.values()):
            _log.warning("run_cancelled_at_shutdown", run_id=active.run_id, grace_s=grace_s)
            active.scope.cancel()
        for active in list(self.active.values()):
            with anyio.move_on_after(self.settings.kill_grace_s + _DRAIN_MARGIN_S, shield=True):
                await active.done.wait()

    def subscribe(self, active: ActiveRun) -> Subscription:
        """Register a watcher of a live run; events stored from now on reach it."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](_SUBSCRIBER_BUFFER)
        active.pipeline.subscribers.add(send)
        return Subscription(active, send, receive)


@dataclass(eq=False, slots=True)
class Subscription:
    """A watcher's feed of one live run; close it when done."""

    run: ActiveRun
    send: MemoryObjectSendStream[dict[str, Any]]
    receive: MemoryObjectReceiveStream[dict[str, Any]]

    def close(self) -> None:
        self.run.pipeline.subscribers.discard(self.send)
        self.send.close()
        self.receive.close()


def _log_run_end(active: ActiveRun) -> None:
    """``run_ended``: ``info`` for a run that succeeded, ``warning`` with its reason (each
    stream that did not succeed and why) for any other end."""
    result = active.result
    if result is None:
        _log.warning("run_ended", run_id=active.run_id, status="cancelled", reason="cancelled")
        return
    status = result.status.value
    if status == "succeeded":
        _log.info("run_ended", run_id=active.run_id, status=status)
        return
    reasons = [
        f"{sid}: {outcome.status.value}" + (f": {outcome.reason}" if outcome.reason else "")
        for sid, outcome in result.streams.items()
        if outcome.status.value != "succeeded"
    ]
    _log.warning(
        "run_ended", run_id=active.run_id, status=status, reason="; ".join(reasons) or status
    )
