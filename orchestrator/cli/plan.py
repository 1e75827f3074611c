"""Commands on plan and event files that need no daemon and no store: ``validate``,
``schema``, ``package`` and ``verify-log``. What only one of them needs (the tokenizer, the
event log reader) is imported inside it, so ``validate`` stays cheap to start."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agents.plans import load_plan
from foundation.errors import OrchestratorError
from foundation.status import ExitCode
from orchestrator.cli._common import fail, output_option
from orchestrator.cli._exit import ExitNow
from streams.agents_from import tool_notes

__all__ = ["package", "schema", "validate", "verify_log"]


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@output_option
def validate(plan_file: Path, as_json: bool) -> None:
    """Check PLAN_FILE; print every problem as file:line:column and exit 2 if any (JSON:
    ``valid``, the counts and notes, or ``problems``)."""
    try:
        plan = load_plan(plan_file)
    except OrchestratorError as exc:
        if not as_json:
            fail(exc)
        click.echo(json.dumps({"file": str(plan_file), "valid": False, "problems": [str(exc)]}))
        sys.exit(exc.exit_code)
    if as_json:
        document = {
            "file": str(plan_file),
            "valid": True,
            "plan": plan.plan,
            "streams": len(plan.streams),
            "steps": plan.total_steps(),
            "agents": len(plan.agents),
            "notes": list(tool_notes(plan.agents)),
        }
        click.echo(json.dumps(document, indent=2))
        raise ExitNow(ExitCode.OK)
    click.echo(
        f"{plan_file}: valid plan {plan.plan!r}: {len(plan.streams)} streams, "
        f"{plan.total_steps()} steps, {len(plan.agents)} agents"
    )
    for note in tool_notes(plan.agents):
        click.echo(f"{plan_file}: note: {note}")
    raise ExitNow(ExitCode.OK)  # nothing to clean up: no teardown of the plan's models


@click.command()
def schema() -> None:
    """Print the plan file's JSON Schema (the repository ships it as plan.schema.json)."""
    from streams.schema import schema_text  # only this command needs it

    click.echo(schema_text(), nl=False)


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@click.option("--agent", "agent", required=True, help="The agent whose package to show.")
@output_option
@click.option("--token-limit", type=int, default=None, help="Override the token limit.")
def package(plan_file: Path, agent: str, as_json: bool, token_limit: int | None) -> None:
    """Show the context package AGENT would receive for PLAN_FILE (nothing runs)."""
    from context_packages import render_package  # tiktoken: only this command needs it

    try:
        plan = load_plan(plan_file)
        text = render_package(plan, agent, as_json=as_json, token_limit=token_limit)
    except OrchestratorError as exc:
        fail(exc)
    click.echo(text, nl=False)


@click.command("verify-log")
@click.argument(
    "event_files", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True)
)
@output_option
def verify_log(event_files: tuple[Path, ...], as_json: bool) -> None:
    """Check EVENT_FILES: caps never exceeded, no lock held twice, fences increasing,
    dependencies respected. Several files (several processes) are merged by time."""
    from orchestrator.verify import verify_event_files

    try:
        report = verify_event_files(list(event_files))
    except (OSError, ValueError) as exc:
        click.echo(f"cannot read events: {exc}", err=True)
        sys.exit(ExitCode.INVALID)
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
    sys.exit(ExitCode.OK if report.ok else ExitCode.FAILED)
