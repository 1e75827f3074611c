"""The ``orchestrator`` command line.

Exit codes: 0 success; 1 a stream failed or was skipped (``run``), or a violation was found
(``verify-log``); 2 an invalid plan or bad usage; 3 no daemon answers (daemon commands);
4 refused: a stream's predicted success probability is below the plan's ``min_confidence``
(``run``, ``submit``; ``--force`` runs it anyway); 130 interrupted (Ctrl-C / SIGTERM).
Errors print as one clear message naming the place and the fix, never as a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console

from agents.actions import builtin_registry
from agents.plans import load_plan
from agents.processes.containment import open_containment
from context_packages import render_package
from foundation.errors import ConfidenceTooLow, OrchestratorError, UsageError
from orchestrator import analysis
from orchestrator.calibration import (
    RealRun,
    calibrate,
    calibration_json,
    real_makespans,
    render_calibration,
)
from orchestrator.cli_daemon import register
from orchestrator.cli_import import run_import
from orchestrator.events import JsonlSink, MemorySink
from orchestrator.evidence_view import EvidenceReport, evidence_json, load_evidence, render_evidence
from orchestrator.logging import configure_logging
from orchestrator.progress import progress_sink
from orchestrator.runs import (
    events_path_for,
    execute_plan,
    new_run_id,
    open_coordinator,
    record_run,
    tune_gc,
)
from orchestrator.scheduler import RunResult, RunStatus, Scheduler
from orchestrator.settings import Settings
from orchestrator.store import HistoryRecord, open_store
from orchestrator.verify import verify_event_files
from streams.agents_from import tool_notes
from streams.model import Plan
from streams.schema import schema_text

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _fail(error: OrchestratorError) -> None:
    click.echo(str(error), err=True)
    sys.exit(error.exit_code)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = Settings().with_overrides(**overrides)
    except ValueError as exc:
        click.echo(f"invalid setting: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _state_dir_option(func: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where runs and their event logs live (env ORCH_STATE_DIR).",
    )(func)


def _history_option(func: F) -> F:
    return click.option(
        "--history",
        "history_scope",
        type=click.Choice(analysis.HISTORY_SCOPES),
        default="signature",
        show_default=True,
        help="Which recorded runs predictions rest on: every run of a stream's signature "
        "(any plan), this plan's runs only, or none.",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="orchestrator")
def cli() -> None:
    """Run phase plans: parallel streams of agents' steps under caps and locks."""
    tune_gc()


@cli.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
def validate(plan_file: Path) -> None:
    """Check PLAN_FILE; print every problem as file:line:column and exit 2 if any."""
    try:
        plan = load_plan(plan_file)
    except OrchestratorError as exc:
        _fail(exc)
        return
    click.echo(
        f"{plan_file}: valid plan {plan.plan!r}: {len(plan.streams)} streams, "
        f"{plan.total_steps()} steps, {len(plan.agents)} agents"
    )
    for note in tool_notes(plan.agents):
        click.echo(f"{plan_file}: note: {note}")


@cli.command()
def schema() -> None:
    """Print the plan file's JSON Schema (the repository ships it as plan.schema.json)."""
    click.echo(schema_text(), nl=False)


@cli.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option(
    "--events",
    "events_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the JSON-lines event log here (default: under the state dir).",
)
@_state_dir_option
@click.option(
    "--redis",
    "redis_url",
    default=None,
    help="Coordinate through Redis (env ORCH_REDIS_URL), e.g. redis://:pw@host:6379/0.",
)
@click.option("--lease-s", type=float, default=None, help="Redis lease period in seconds.")
@click.option("--plain", is_flag=True, help="Plain progress lines even on a terminal.")
@click.option("--force", is_flag=True, help="Run even below the plan's min_confidence.")
@_history_option
def run(
    plan_file: Path,
    events_path: Path | None,
    state_dir: Path | None,
    redis_url: str | None,
    lease_s: float | None,
    plain: bool,
    force: bool,
    history_scope: analysis.HistoryScope,
) -> None:
    """Run PLAN_FILE in this process with live progress; the exit code is the outcome."""
    settings = _settings(state_dir=state_dir, redis_url=redis_url, lease_s=lease_s)
    try:
        plan = load_plan(plan_file)
    except OrchestratorError as exc:
        _fail(exc)
        return
    if plan.min_confidence is not None and not force:
        try:
            problems = anyio.run(_confidence_problems, settings, plan, history_scope)
        except OrchestratorError as exc:
            _fail(exc)
            return
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
        )
    except OrchestratorError as exc:
        _fail(exc)
        return
    except BaseExceptionGroup as group:
        _fail(_only_error(group))
        return
    if result is None:
        click.echo(f"run {run_id}: interrupted", err=True)
        sys.exit(130)
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
) -> RunResult | None:
    sink = JsonlSink(path)
    if sink.error is not None:  # it never raises; here, before anything runs, refuse
        raise UsageError(f"cannot write the event file {path}: {sink.error.strerror}")
    kept = MemorySink()
    progress = progress_sink(console, sys.stdout, plain=plain)
    result: RunResult | None = None
    interrupts = _Interrupts()
    try:
        async with (
            open_containment(settings.state_dir),
            open_coordinator(settings) as coordinator,
            anyio.create_task_group() as tg,
        ):
            # The watcher lives outside the scope it cancels: it hears the second Ctrl-C.
            run_scope = anyio.CancelScope()
            tg.start_soon(interrupts.watch, run_scope)
            with run_scope, progress:
                result = await execute_plan(
                    plan,
                    run_id=run_id,
                    settings=settings,
                    coordinator=coordinator,
                    registry=builtin_registry(),
                    sinks=[sink, progress, kept],
                    workdir=workdir,
                    on_scheduler=interrupts.attach,
                )
            tg.cancel_scope.cancel()
    finally:
        sink.close()
        # Into the same store as the daemon's, so history and evidence grow either way.
        with anyio.CancelScope(shield=True):
            await record_run(settings, plan, plan_text, workdir, run_id, kept.events)
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


@cli.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option("--agent", "agent", required=True, help="The agent whose package to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the package as JSON.")
@click.option("--token-limit", type=int, default=None, help="Override the token limit.")
def package(plan_file: Path, agent: str, as_json: bool, token_limit: int | None) -> None:
    """Show the context package AGENT would receive for PLAN_FILE (nothing runs)."""
    try:
        plan = load_plan(plan_file)
        text = render_package(plan, agent, as_json=as_json, token_limit=token_limit)
    except OrchestratorError as exc:
        _fail(exc)
        return
    click.echo(text, nl=False)


@cli.command("import")
@click.argument("markdown_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the plan here (default: stdout).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the import report as JSON on stdout.")
@click.option(
    "--agents-dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Claude Code agent definitions (*.md) to take agents from "
    "(default: .claude/agents beside the document).",
)
def import_(
    markdown_file: Path, output: Path | None, as_json: bool, agents_dir: Path | None
) -> None:
    """Turn a Markdown phase plan (like the users' Phase 2 document) into a plan file.

    Everything it could not map is reported on stderr with its line number.
    """
    run_import(markdown_file, output, as_json, agents_dir)


@cli.command("verify-log")
@click.argument(
    "event_files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True)
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_log(event_files: tuple[Path, ...], as_json: bool) -> None:
    """Check EVENT_FILES: caps never exceeded, no lock held twice, fences increasing,
    dependencies respected. Several files (several processes) are merged by time."""
    try:
        report = verify_event_files(list(event_files))
    except (OSError, ValueError) as exc:
        click.echo(f"cannot read events: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "events": report.events,
                    "runs": report.runs,
                    "steps": report.steps,
                    "peak": report.peak,
                    "caps": report.caps,
                    "lock_grants": dict(report.lock_grants),
                    "violations": report.violations,
                    "warnings": report.warnings,
                },
                indent=2,
            )
        )
    else:
        click.echo(report.render())
    sys.exit(0 if report.ok else 1)


@cli.command("analyze")
@click.argument("plan_file", type=click.Path(path_type=Path))
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON.")
@_history_option
@click.option(
    "--calibration",
    is_flag=True,
    help="Also score past predictions: Brier score, reliability table, real vs predicted "
    "makespans.",
)
def analyze_command(
    plan_file: Path,
    state_dir: Path | None,
    as_json: bool,
    history_scope: analysis.HistoryScope,
    calibration: bool,
) -> None:
    """Print PLAN_FILE's strategic decision matrix: per stream its success probability (the
    plan's estimate updated by recorded runs), predicted failure next to the plan's declared
    risk, timeline, methodology and the history it rests on; then the expected makespan
    (from service times) next to the last real one, and the critical path under the plan's
    caps and locks. Nothing runs."""
    settings = _settings(state_dir=state_dir)
    try:
        plan = load_plan(plan_file)
        history, makespans = anyio.run(_plan_history, settings, plan, history_scope)
        result = analysis.analyze(
            plan,
            history,
            aging_s=settings.aging_s,
            starve_after_s=settings.starve_after_s,
            history_scope=history_scope,
            last_run=(makespans[0].run_id, makespans[0].real_s) if makespans else None,
        )
    except OrchestratorError as exc:
        _fail(exc)
        return
    scored = (
        calibrate(
            plan,
            history,
            prior_weight=result.prior_weight,
            predicted_makespan_s=result.schedule.makespan_s,
            runs=makespans,
            makespan_for=lambda before: (
                analysis.analyze(
                    plan, before, aging_s=settings.aging_s, starve_after_s=settings.starve_after_s
                ).schedule.makespan_s
            ),
        )
        if calibration
        else None
    )
    if as_json:
        document = analysis.analysis_json(result)
        if scored is not None:
            document["calibration"] = calibration_json(scored)
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(analysis.render_analysis(result), nl=False)
        if scored is not None:
            click.echo(render_calibration(scored), nl=False)


async def _plan_history(
    settings: Settings, plan: Plan, scope: analysis.HistoryScope
) -> tuple[Mapping[str, list[HistoryRecord]], list[RealRun]]:
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        history = await analysis.load_history(store, plan, scope=scope)
        return history, await real_makespans(store, plan)


@cli.command()
@click.argument("run_id")
@click.option("--stream", default=None, help="Only this stream's evidence.")
@_state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the evidence as JSON.")
def evidence(run_id: str, stream: str | None, state_dir: Path | None, as_json: bool) -> None:
    """Show RUN_ID's evidence: what each step checked, from which source, verified by the
    daemon or claimed by an agent, with metrics, excerpt and sha256; and each gate's verdict."""
    settings = _settings(state_dir=state_dir)
    try:
        report = anyio.run(_run_evidence, settings, run_id, stream)
    except OrchestratorError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(evidence_json(report), indent=2))
    else:
        click.echo(render_evidence(report), nl=False)


async def _run_evidence(settings: Settings, run_id: str, stream: str | None) -> EvidenceReport:
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        return await load_evidence(store, run_id, stream=stream)


register(cli, _settings)


@cli.command("report")
@click.argument("run_id")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="HTML file to write."
)
@_state_dir_option
def report_(run_id: str, output: Path, state_dir: Path | None) -> None:
    """Write RUN_ID's page and Gantt timeline to one self-contained HTML file (read from the
    run store; no daemon needed)."""
    from orchestrator.web.report import write_report

    settings = _settings(state_dir=state_dir)
    try:
        anyio.run(
            lambda: write_report(
                run_id, output, store_url=settings.store_url(), state_dir=settings.state_dir
            )
        )
    except OrchestratorError as exc:
        _fail(exc)
        return
    click.echo(f"wrote {output}")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="orchestrator")
