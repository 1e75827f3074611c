"""Running one plan: run ids, the coordinator for the settings, the event files, and
:func:`assemble_run`, the one way a run is put together.

Shared by ``orchestrator run`` (in-process, :func:`execute_plan`) and the daemon
(``RunManager``): both build a coordinator from the settings, and :func:`assemble_run` binds
an event log to the run's sinks (plus a relay into the coordinator's event stream, if it has
one) and hands it to the scheduler. Each event file is at :func:`events_path_for`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio

from agents.gpus import GpuAllocator
from agents.registry import ActionRegistry
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.event_relay import EventRelay, relay_for
from orchestrator.events import Durability, EventLog, EventSink, Redactor
from orchestrator.gc_tuning import freeze_loaded, tune_gc
from orchestrator.scheduler import PriorState, RunResult, Scheduler, SchedulerConfig
from orchestrator.settings import Settings
from orchestrator.store import IN_PROCESS_ORIGIN
from streams.model import Plan

__all__ = [
    "IN_PROCESS_ORIGIN",
    "AssembledRun",
    "assemble_run",
    "events_path_for",
    "execute_plan",
    "freeze_loaded",
    "new_run_id",
    "open_coordinator",
    "relay_for",
    "tune_gc",
]


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
