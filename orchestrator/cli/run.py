"""``orchestrator run``: one plan in this process, with live progress (``-o json``: its
events as JSON lines on stdout); the exit code is the outcome (0 succeeded, 1 a stream
failed or was skipped, 2 invalid plan or usage, 4 refused by ``min_confidence``, 130
interrupted)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import anyio
import click
from rich.console import Console

from agents.actions import builtin_registry
from agents.plans import load_plan
from agents.processes.containment import open_containment
from foundation.errors import ConfidenceTooLow, OrchestratorError, UsageError
from foundation.status import ExitCode
from orchestrator import analysis
from orchestrator.cli._common import (
    fail,
    history_option,
    output_option,
    settings_of,
    state_dir_option,
)
from orchestrator.events import JsonlSink
from orchestrator.progress import progress_sink
from orchestrator.recording import record_run
from orchestrator.runs import (
    events_path_for,
    execute_plan,
    freeze_loaded,
    new_run_id,
    open_coordinator,
)
from orchestrator.scheduler import RunResult, RunStatus, Scheduler
from orchestrator.settings import Settings
from orchestrator.store import open_store
from streams.model import Plan

__all__ = ["run"]


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option(
    "--events",
    "events_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the JSON-lines event log here (default: under the state dir).",
)
@state_dir_option
@click.option(
    "--redis",
    "redis_url",
    default=None,
    help="Coordinate through Redis (env ORCH_REDIS_URL), e.g. redis://:pw@host:6379/0.",
)
@click.option("--lease-s", type=float, default=None, help="Redis lease period in seconds.")
@click.option("--plain", is_flag=True, help="Plain progress lines even on a terminal.")
@click.option("--force", is_flag=True, help="Run even below the plan's min_confidence.")
@history_option
@output_option
def run(
    plan_file: Path,
    events_path: Path | None,
    state_dir: Path | None,
    redis_url: str | None,
    lease_s: float | None,
    plain: bool,
    force: bool,
    history_scope: analysis.HistoryScope,
    as_json: bool,
) -> None:
    """Run PLAN_FILE in this process with live progress; the exit code is the outcome."""
    settings = settings_of(state_dir=state_dir, redis_url=redis_url, lease_s=lease_s)
    try:
        plan = load_plan(plan_file)
    except OrchestratorError as exc:
        fail(exc)
    freeze_loaded()
    if plan.min_confidence is not None and not force:
        try:
            problems = anyio.run(_confidence_problems, settings, plan, history_scope)
        except OrchestratorError as exc:
            fail(exc)
        if problems:
            click.echo(f"plan {plan.plan} not run: " + "; ".join(problems), err=True)
            click.echo("(fix: --force to run it anyway, or lower min_confidence)", err=True)
            sys.exit(ConfidenceTooLow.exit_code)
    run_id = new_run_id()
    path = events_path or events_path_for(settings, run_id)
    click.echo(f"run {run_id}: plan {plan.plan}, events in {path}", err=True)
    console = Console(stderr=False)
    try:
        result = anyio.run(
            _run,
            plan,
            plan_file.read_text(encoding="utf-8"),
            plan_file.resolve().parent,
            settings,
            run_id,
            path,
            console,
            plain,
            as_json,
        )
    except OrchestratorError as exc:
        fail(exc)
    except BaseExceptionGroup as group:
        fail(_only_error(group))
    if result is None:
        click.echo(f"run {run_id}: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    failed = {sid: o for sid, o in result.streams.items() if o.status.value != "succeeded"}
    for sid, outcome in failed.items():
        click.echo(f"stream {sid}: {outcome.status.value}: {outcome.reason}", err=True)
    click.echo(f"run {run_id}: {result.status.value} (events: {path})", err=True)
    sys.exit(result.status.exit_code)


async def _run(
    plan: Plan,
    plan_text: str,
    workdir: Path,
    settings: Settings,
    run_id: str,
    path: Path,
    console: Console,
    plain: bool,
    as_json: bool = False,
) -> RunResult | None:
    sink = JsonlSink(path)
    if sink.error is not None:  # it never raises; here, before anything runs, refuse
        raise UsageError(f"cannot write the event file {path}: {sink.error.strerror}")
    progress: Any = (
        _JsonLines(sys.stdout) if as_json else progress_sink(console, sys.stdout, plain=plain)
    )
    result: RunResult | None = None
    interrupts = _Interrupts()
    try:
        # Into the same store as the daemon's, while it runs, so history and evidence grow
        # either way.
        async with (
            record_run(settings, plan, plan_text, workdir, run_id) as recorder,
            open_containment(settings.state_dir),
            open_coordinator(settings) as coordinator,
            anyio.create_task_group() as tg,
        ):
            # The watcher lives outside the scope it cancels: it hears the second Ctrl-C.
            run_scope = anyio.CancelScope()
            tg.start_soon(interrupts.watch, run_scope)
            tg.start_soon(recorder.write_forever)
            with run_scope, progress:
                result = await execute_plan(
                    plan,
                    run_id=run_id,
                    settings=settings,
                    coordinator=coordinator,
                    registry=builtin_registry(),
                    sinks=[sink, progress, recorder],
                    workdir=workdir,
                    on_scheduler=interrupts.attach,
                )
            tg.cancel_scope.cancel()
    finally:
        sink.close()
    if result is not None and result.status is RunStatus.CANCELLED:
        return None
    return result


async def _confidence_problems(
    settings: Settings, plan: Plan, scope: analysis.HistoryScope
) -> list[str]:
    """Streams whose predicted success probability is below the plan's min_confidence."""
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        history = await analysis.load_history(store, plan, scope=scope)
    return analysis.check_min_confidence(plan, analysis.estimate_streams(plan, history))


def _only_error(group: BaseExceptionGroup[Any]) -> OrchestratorError:
    """The error a task group wrapped (a coordinator that cannot connect, say), so that the
    user gets its one clear line; anything else is a bug and is raised as it is."""
    errors = group.subgroup(OrchestratorError)
    if errors is None or group.split(OrchestratorError)[1] is not None:
        raise group
    first: BaseException = errors
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, OrchestratorError)
    return first


class _JsonLines:
    """``-o json``: every event as one JSON line on ``out``, as ``watch -o json`` prints."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def __enter__(self) -> _JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._out.flush()

    def emit(self, event: Mapping[str, Any]) -> None:
        self._out.write(json.dumps(event, default=str) + "\n")
        self._out.flush()


class _Interrupts:
    """Ctrl-C (or SIGTERM) cancels the run, whose started streams roll back; a second one
    abandons those rollbacks (recorded as ``rollback_abandoned``); the exit code is 130."""

    def __init__(self) -> None:
        self._scheduler: Scheduler | None = None

    def attach(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def watch(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if not scope.cancel_called:
                    click.echo("interrupted: rolling back, Ctrl-C again to abandon", err=True)
                    scope.cancel()
                elif self._scheduler is not None:
                    click.echo("rollback abandoned", err=True)
                    self._scheduler.abandon_rollbacks()
