"""Commands that read what runs recorded in the run store (no daemon needed): ``analyze``,
``evidence`` and ``report``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import anyio
import click

from agents.plans import load_plan
from foundation.errors import OrchestratorError
from orchestrator import analysis
from orchestrator.analysis.calibration import (
    RealRun,
    calibrate,
    calibration_json,
    real_makespans,
    render_calibration,
)
from orchestrator.cli._common import (
    fail,
    history_option,
    output_option,
    settings_of,
    state_dir_option,
)
from orchestrator.evidence_view import EvidenceReport, evidence_json, load_evidence, render_evidence
from orchestrator.settings import Settings
from orchestrator.store import HistoryRecord, open_store
from streams.model import Plan

__all__ = ["analyze_command", "evidence", "report_"]


@click.command("analyze")
@click.argument("plan_file", type=click.Path(path_type=Path))
@state_dir_option
@output_option
@history_option
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
    settings = settings_of(state_dir=state_dir)
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
        fail(exc)
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


@click.command()
@click.argument("run_id")
@click.option("--stream", default=None, help="Only this stream's evidence.")
@state_dir_option
@output_option
def evidence(run_id: str, stream: str | None, state_dir: Path | None, as_json: bool) -> None:
    """Show RUN_ID's evidence: what each step checked, from which source, verified by the
    daemon or claimed by an agent, with metrics, excerpt and sha256; and each gate's verdict."""
    settings = settings_of(state_dir=state_dir)
    try:
        report = anyio.run(_run_evidence, settings, run_id, stream)
    except OrchestratorError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(evidence_json(report), indent=2))
    else:
        click.echo(render_evidence(report), nl=False)


async def _run_evidence(settings: Settings, run_id: str, stream: str | None) -> EvidenceReport:
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        return await load_evidence(store, run_id, stream=stream)


@click.command("report")
@click.argument("run_id")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="HTML file to write."
)
@state_dir_option
def report_(run_id: str, output: Path, state_dir: Path | None) -> None:
    """Write RUN_ID's page and Gantt timeline to one self-contained HTML file (read from the
    run store; no daemon needed)."""
    from orchestrator.web.report import write_report

    settings = settings_of(state_dir=state_dir)
    try:
        anyio.run(
            lambda: write_report(
                run_id, output, store_url=settings.store_url(), state_dir=settings.state_dir
            )
        )
    except OrchestratorError as exc:
        fail(exc)
    click.echo(f"wrote {output}")
