"""Running one plan: run ids, the coordinator for the settings, the event files.

Shared by ``orchestrator run`` (in-process) and, later, the daemon: both build a coordinator
from the settings, bind an event log to the run's sinks and hand them to the scheduler.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from agents.registry import ActionRegistry
from foundation.errors import OrchestratorError
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.event_relay import EventRelay
from orchestrator.events import EventLog, EventSink, Redactor
from orchestrator.gc_tuning import tune_gc
from orchestrator.scheduler import RunResult, Scheduler, SchedulerConfig
from orchestrator.settings import Settings
from orchestrator.store import RunRecord, open_store
from streams.model import Plan

__all__ = [
    "events_path_for",
    "execute_plan",
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


async def record_run(
    settings: Settings,
    plan: Plan,
    plan_text: str,
    workdir: Path,
    run_id: str,
    events: Sequence[Mapping[str, Any]],
    timeout_s: float = 30.0,
) -> None:
    """Store a finished in-process run and its events, as the daemon would have.

    Written once at the end, never while running: a daemon sharing the store must not take
    a run that this process is still running for one to resume. A store that cannot be
    reached costs the history, not the run: it is logged (the events file still has all).
    """
    try:
        with anyio.fail_after(timeout_s):
            async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
                await store.create_run(
                    RunRecord(
                        run_id=run_id,
                        plan=plan.plan,
                        plan_source=plan_text,
                        workdir=workdir,
                        status="running",
                        options={"origin": "orchestrator run"},
                    )
                )
                await store.append_events(run_id, list(events))
    except (OrchestratorError, TimeoutError) as exc:
        _log.warning("run_not_recorded", run_id=run_id, error=str(exc))


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
    relay = relay_for(coordinator, run_id)
    events = EventLog(
        run_id, [*sinks, *([relay] if relay else [])], redactor=Redactor(settings.secrets())
    )
    scheduler = Scheduler(
        plan,
        run_id=run_id,
        coordinator=coordinator,
        registry=registry,
        events=events,
        config=SchedulerConfig(
            workdir=workdir, env=settings.step_env(), kill_grace_s=settings.kill_grace_s
        ),
    )
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


def relay_for(coordinator: Coordinator, run_id: str) -> EventRelay | None:
    """A relay into the coordinator's event stream, if it has one (Redis does)."""
    append = getattr(coordinator, "append_event", None)
    if append is None:
        return None
    return EventRelay(functools.partial(append, run_id))
