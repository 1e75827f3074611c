"""Running one plan: run ids, the coordinator for the settings, the event files.

Shared by ``orchestrator run`` (in-process) and, later, the daemon: both build a coordinator
from the settings, bind an event log to the run's sinks and hand them to the scheduler.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from agents.registry import ActionRegistry
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.events import EventLog, EventSink, Redactor
from orchestrator.scheduler import RunResult, Scheduler, SchedulerConfig
from orchestrator.settings import Settings
from streams.model import Plan

__all__ = ["events_path_for", "execute_plan", "new_run_id", "open_coordinator"]


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
        ) as coordinator:
            yield coordinator
        return
    yield InProcessCoordinator(aging_s=settings.aging_s, starve_after_s=settings.starve_after_s)


async def execute_plan(
    plan: Plan,
    *,
    run_id: str,
    settings: Settings,
    coordinator: Coordinator,
    registry: ActionRegistry,
    sinks: Sequence[EventSink],
    workdir: Path,
) -> RunResult:
    """Run ``plan`` once with events going to ``sinks``; return how it ended."""
    events = EventLog(run_id, sinks, redactor=Redactor(settings.secrets()))
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
    return await scheduler.run()
