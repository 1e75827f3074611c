"""``orchestrator daemon``: runs submitted plans and answers questions about them.

Life cycle (one root task group; a signal cancels nothing abruptly)::

    open the store and the coordinator
    resume every unfinished run the store knows (see orchestrator.daemon.run_manager)
    serve the control socket                        (orchestrator.daemon.control_socket)
    SIGTERM / SIGINT: stop accepting work, let running steps finish within
        ``shutdown_grace_s``, cancel and record the rest, close everything, exit 0

Methods of the control socket are documented in ``docs/protocol.md``.
"""

from __future__ import annotations

import gc
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import TaskStatus
from pydantic import BaseModel, ValidationError

from agents.gpus import GpuAllocator, NvmlProbe
from agents.processes.containment import open_containment
from agents.registry import ActionRegistry
from foundation.errors import PlanInvalid
from orchestrator import __version__
from orchestrator.analysis import check_min_confidence, estimate_streams, load_history
from orchestrator.coordination.base import Coordinator
from orchestrator.daemon.control_socket import Connection, ControlServer, prepare_socket_path
from orchestrator.daemon.readiness import remove_pid_file, sd_notify, write_pid_file
from orchestrator.daemon.rpc import (
    AgentsListParams,
    ErrorCode,
    EventsSubscribeParams,
    LocksListParams,
    RpcError,
    RunIdParams,
    RunsListParams,
    SubmitParams,
    notification,
    params_error,
)
from orchestrator.daemon.run_manager import RunManager
from orchestrator.daemon.views import (
    agents_of,
    locks_of,
    may_use_models,
    run_detail,
    run_summary,
    usage_by_stream,
)
from orchestrator.runs import open_coordinator, tune_gc
from orchestrator.settings import Settings
from orchestrator.store import RunRecord, RunStore, open_store
from orchestrator.tracing import trace_sinks

__all__ = ["Daemon", "run_daemon"]

_log = structlog.get_logger("orchestrator.daemon")

Method = Callable[[Any, Connection], Awaitable[Any]]

#: Notifications a watcher gets in one write at most.
_SEND_BATCH = 256
#: runs.get answers kept for reuse (one per run, oldest dropped first).
_DETAIL_CACHE = 16


def _raise_fd_limit() -> None:
    """Idle clients cost a descriptor each: allow as many as the hard limit permits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True, slots=True)
class _Detail:
    """A runs.get answer kept for reuse: the store's ``last_seq`` and the active run's
    ``stored_seq`` (-1 once it ended) it was read at, the run's record and its streams
    part, encoded, and its token usage."""

    last_seq: int
    stored_seq: int
    run: RunRecord
    streams: orjson.Fragment
    usage: dict[str, int]

    def answer(self) -> dict[str, Any]:
        return {**run_summary(self.run), "usage": self.usage, "streams": self.streams}


class Daemon:
    """The daemon's request handlers over a store, a coordinator and its runs."""

    def __init__(
        self, settings: Settings, store: RunStore, coordinator: Coordinator, runs: RunManager
    ) -> None:
        self.settings = settings
        self.store = store
        self.coordinator = coordinator
        self.runs = runs
        self.started = time.monotonic()
        self._parsing = anyio.CapacityLimiter(1)
        self._details: dict[str, _Detail] = {}
        self._methods: dict[str, tuple[type[BaseModel], Method]] = {
            "submit": (SubmitParams, self.submit),
            "runs.list": (RunsListParams, self.runs_list),
            "runs.get": (RunIdParams, self.runs_get),
            "runs.cancel": (RunIdParams, self.runs_cancel),
            "agents.list": (AgentsListParams, self.agents_list),
            "locks.list": (LocksListParams, self.locks_list),
            "events.subscribe": (EventsSubscribeParams, self.events_subscribe),
            "health": (LocksListParams, self.health),
        }

    async def handle(self, method: str, params: dict[str, Any], conn: Connection) -> Any:
        entry = self._methods.get(method)
        if entry is None:
            raise RpcError(
                ErrorCode.METHOD_NOT_FOUND,
                f"unknown method {method!r}; known: {', '.join(sorted(self._methods))}",
            )
        model, func = entry
        try:
            parsed = model.model_validate(params)
        except ValidationError as exc:
            raise params_error(method, exc) from None
        return await func(parsed, conn)

    async def submit(self, params: SubmitParams, conn: Connection) -> dict[str, Any]:
        if self.runs.draining:
            raise RpcError(
                ErrorCode.SHUTTING_DOWN, "the daemon is shutting down; submit again once it is back"
            )
        try:
            # Off the event loop: a large plan parses for seconds, and status, watchers and
            # every run's event pipeline would wait that long.
            plan = await anyio.to_thread.run_sync(
                self.runs.parse, params.plan_text, params.plan_path, limiter=self._parsing
            )
        except PlanInvalid as exc:
            raise RpcError(
                ErrorCode.PLAN_INVALID, str(exc), {"problems": [str(p) for p in exc.problems]}
            ) from None
        if plan.min_confidence is not None and not params.force:
            history = await load_history(self.store, plan, scope=params.history)
            problems = check_min_confidence(plan, estimate_streams(plan, history))
            if problems:
                raise RpcError(
                    ErrorCode.CONFIDENCE_TOO_LOW,
                    f"plan {plan.plan} not run: " + "; ".join(problems) + " (fix: submit "
                    "with --force to run it anyway, or lower the plan's min_confidence)",
                    {"problems": problems, "min_confidence": plan.min_confidence},
                )
        run_id = await self.runs.submit(
            plan,
            params.plan_text,
            params.plan_path,
            {"force": params.force, "peer_uid": conn.peer_uid},
        )
        _log.info("run_submitted", run_id=run_id, plan=plan.plan, peer_pid=conn.peer_pid)
        return {"run_id": run_id, "plan": plan.plan}

    async def runs_list(self, params: RunsListParams, conn: Connection) -> dict[str, Any]:
        runs = await self.store.list_runs(
            limit=params.limit, statuses=params.status, plan=params.plan, since=params.since
        )
        return {"runs": [run_summary(r) for r in runs]}

    async def runs_get(self, params: RunIdParams, conn: Connection) -> dict[str, Any]:
        # A run's record, streams, steps and live view change only with stored events, so
        # the last answer is reused while no event was stored since it was read. For a run
        # that is active the daemon knows that without asking the store (its pipeline's
        # stored_seq), so a repeated call makes no store call at all: the store's worker
        # is busy writing events while many steps run. The streams part is kept encoded
        # (an orjson Fragment, written out as it is): a 1,000-step run's is ~200 KB.
        active = self.runs.active.get(params.run_id)
        cached = self._details.get(params.run_id)
        if (
            active is not None
            and cached is not None
            and cached.stored_seq == active.pipeline.stored_seq
        ):
            return cached.answer()
        # Read before the store: what the reads below return is at least this new.
        stored_seq = active.pipeline.stored_seq if active is not None else -1
        run = await self.store.get_run(params.run_id)
        if run is None:
            raise RpcError(
                ErrorCode.RUN_NOT_FOUND,
                f"no run {params.run_id!r}; `orchestrator status` lists the runs",
            )
        if cached is None or (cached.last_seq, cached.stored_seq) != (run.last_seq, stored_seq):
            streams = await self.store.get_streams(params.run_id)
            steps = await self.store.get_steps(params.run_id)
            live = active.pipeline.view if active is not None else None
            # A live run's view counts its tokens; a finished one's are in its stored events
            # (read only for plans with model-driven agents: others have none to count).
            usage = None
            if active is None and may_use_models(run.plan_source):
                usage = usage_by_stream(await self.store.step_outputs(params.run_id))
            detail = run_detail(run, streams, steps, live, usage)
            encoded = orjson.Fragment(orjson.dumps(detail["streams"], default=str))
            cached = _Detail(run.last_seq, stored_seq, run, encoded, detail["usage"])
        else:
            cached = replace(cached, run=run)
        self._details[params.run_id] = cached
        while len(self._details) > _DETAIL_CACHE:
            del self._details[next(iter(self._details))]
        return cached.answer()

    async def runs_cancel(self, params: RunIdParams, conn: Connection) -> dict[str, Any]:
        if params.run_id not in self.runs.active:
            run = await self.store.get_run(params.run_id)
            if run is None:
                raise RpcError(ErrorCode.RUN_NOT_FOUND, f"no run {params.run_id!r}")
            raise RpcError(
                ErrorCode.RUN_FINISHED, f"run {params.run_id} already ended ({run.status})"
            )
        status = await self.runs.cancel(params.run_id)
        _log.info("run_cancel_requested", run_id=params.run_id, peer_pid=conn.peer_pid)
        return {"run_id": params.run_id, "status": status}

    async def agents_list(self, params: AgentsListParams, conn: Connection) -> dict[str, Any]:
        if (
            params.run_id is not None
            and params.run_id not in self.runs.active
            and await self.store.get_run(params.run_id) is None
        ):
            raise RpcError(ErrorCode.RUN_NOT_FOUND, f"no run {params.run_id!r}")
        runs = [
            a
            for rid, a in self.runs.active.items()
            if params.run_id is None or rid == params.run_id
        ]
        return {"agents": agents_of(runs)}

    async def locks_list(self, params: LocksListParams, conn: Connection) -> dict[str, Any]:
        snapshot = await self.coordinator.snapshot()
        caps: dict[str, int | None] = {}
        for active in self.runs.active.values():
            caps.update(active.plan.caps)
        return locks_of(snapshot, caps)

    async def health(self, params: LocksListParams, conn: Connection) -> dict[str, Any]:
        return {
            "status": "draining" if self.runs.draining else "ok",
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "active_runs": len(self.runs.active),
            "store": self.store.where,
            "coordinator": "redis" if self.settings.redis_url else "in-process",
        }

    async def events_subscribe(
        self, params: EventsSubscribeParams, conn: Connection
    ) -> dict[str, Any]:
        """Stream a run's events as ``events.event`` notifications until it ends, then
        answer with its final status. From the start: stored events first, then live ones,
        with no gap and no duplicate (by ``seq``)."""
        run_id = params.run_id
        active = self.runs.active.get(run_id)
        if active is None and await self.store.get_run(run_id) is None:
            raise RpcError(ErrorCode.RUN_NOT_FOUND, f"no run {run_id!r}")
        subscription = self.runs.subscribe(active) if active is not None else None
        try:
            last = 0
            if params.from_ == "start":
                async for event in self.runs.stored_events(run_id):
                    await conn.send(notification("events.event", {"event": event}))
                    last = int(event["seq"])
            elif active is not None:
                last = active.pipeline.stored_seq
            if subscription is not None:
                async for event in subscription.receive:
                    # Whatever else is already queued goes out in the same write.
                    batch = [event]
                    with suppress(anyio.WouldBlock, anyio.EndOfStream):
                        while len(batch) < _SEND_BATCH:
                            batch.append(subscription.receive.receive_nowait())
                    fresh = [e for e in batch if int(e["seq"]) > last]
                    if fresh:
                        await conn.send_many(
                            [notification("events.event", {"event": e}) for e in fresh]
                        )
                        last = int(fresh[-1]["seq"])
                # The run ended; a slow watcher may have been dropped: catch up from the store.
                async for event in self.runs.stored_events(run_id, after_seq=last):
                    await conn.send(notification("events.event", {"event": event}))
        finally:
            if subscription is not None:
                subscription.close()
        run = await self.store.get_run(run_id)
        return {"run_id": run_id, "status": run.status if run else "unknown"}


async def run_daemon(
    settings: Settings,
    registry: ActionRegistry,
    *,
    http: tuple[str, int] | None = None,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (see module doc)."""
    _raise_fd_limit()
    tune_gc()  # also here for callers that start the daemon without the CLI
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    prepare_socket_path(settings.socket_path())  # refuse early if a daemon is live there
    write_pid_file(settings.socket_path())  # clients wait for a daemon that is starting
    try:
        await _serve(settings, registry, http, task_status)
    finally:
        remove_pid_file(settings.socket_path())
    _log.info("daemon_stopped")


async def _serve(
    settings: Settings,
    registry: ActionRegistry,
    http: tuple[str, int] | None,
    task_status: TaskStatus[None],
) -> None:
    async with (
        open_containment(settings.state_dir),  # reaps step processes a killed daemon left
        open_store(settings.store_url(), state_dir=settings.state_dir) as store,
        open_coordinator(settings) as coordinator,
        NvmlProbe() as gpu_probe,  # opens NVML only if a step ever asks for a GPU
        anyio.create_task_group() as tg,
    ):
        runs = RunManager(
            settings=settings,
            store=store,
            coordinator=coordinator,
            registry=registry,
            task_group=tg,
            gpus=GpuAllocator(gpu_probe),
        )
        runs.sinks.extend(trace_sinks())  # OpenTelemetry spans, if OTEL_EXPORTER_OTLP_ENDPOINT
        daemon = Daemon(settings, store, coordinator, runs)
        server = ControlServer(
            settings.socket_path(),
            daemon.handle,
            idle_timeout_s=settings.idle_timeout_s,
            max_connections=settings.max_connections,
        )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await tg.start(server.serve)
            if http is not None:  # the web dashboard (orchestrator/web), off by default
                from orchestrator.web.app import serve_http

                await tg.start(partial(serve_http, daemon, *http))
            resumed = await runs.resume_unfinished()
            # What the start built (modules, models, the store) lives as long as the daemon:
            # out of every later collection, which then walk only what runs create.
            gc.freeze()
            _log.info(
                "daemon_started",
                socket=str(server.path),
                store=store.where,
                resumed=resumed,
                version=__version__,
            )
            task_status.started()
            sd_notify("READY=1")
            async for signum in signals:
                _log.info(
                    "shutdown_requested",
                    signal=signal.Signals(signum).name,
                    grace_s=settings.shutdown_grace_s,
                )
                break
        sd_notify("STOPPING=1")
        # The socket keeps answering status and watch while running steps finish.
        await runs.drain(settings.shutdown_grace_s)
        tg.cancel_scope.cancel()
