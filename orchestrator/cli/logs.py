"""``orchestrator logs RUN_ID [STREAM[/STEP]] [--follow]``: the stdout/stderr a run's steps
produced, as the run store keeps it (bounded tails, masked like every event).

Without ``--follow`` it reads the run store (no daemon needed). With ``--follow`` it asks the
daemon for the run's events (``events.subscribe``; ``step_finished`` carries the tails) and
prints each matching attempt's output as it finishes; it ends when the step named ends (not
to be retried), when its stream ends, or when the run ends.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import anyio
import click

from foundation.errors import OrchestratorError, UsageError
from foundation.status import ExitCode
from orchestrator.cli._common import (
    fail,
    output_option,
    run_client,
    settings_of,
    socket_option,
    state_dir_option,
)
from orchestrator.daemon.client import ControlClient
from orchestrator.settings import Settings
from orchestrator.step_output import StepOutput, step_output
from orchestrator.store import open_store

__all__ = ["logs", "render_output"]

#: Step statuses after which no further attempt follows.
_FINAL_STEP = frozenset({"succeeded", "cancelled", "interrupted", "skipped"})


def render_output(output: StepOutput) -> str:
    """One attempt's output for people: a header line, then its stdout and stderr tails."""
    attempt = f" attempt {output.attempt}" if output.attempt is not None else ""
    phase = f" ({output.phase})" if output.phase else ""
    lines = [f"== {output.stream}/{output.step}{phase}{attempt}: {output.status} =="]
    if output.stdout_tail:
        lines += ["[stdout]", output.stdout_tail.rstrip("\n")]
    if output.stderr_tail:
        lines += ["[stderr]", output.stderr_tail.rstrip("\n")]
    if not output.stdout_tail and not output.stderr_tail:
        lines.append("(no output)")
    return "\n".join(lines) + "\n"


def _target(where: str | None) -> tuple[str | None, str | None]:
    if not where:
        return None, None
    stream, _, step = where.partition("/")
    if not stream or "/" in step:
        raise UsageError(f"{where!r}: name a STREAM or a STREAM/STEP (fix: redis-auth/restart)")
    return stream, step or None


@click.command()
@click.argument("run_id")
@click.argument("where", metavar="[STREAM[/STEP]]", required=False)
@click.option("--follow", "-f", is_flag=True, help="Print output as steps finish (daemon).")
@state_dir_option
@socket_option
@output_option
def logs(
    run_id: str,
    where: str | None,
    follow: bool,
    state_dir: Path | None,
    socket_path: Path | None,
    as_json: bool,
) -> None:
    """Show the bounded, masked stdout/stderr of RUN_ID's steps (of one STREAM or
    STREAM/STEP), attempt by attempt. JSON: one object per attempt (a list; JSON lines
    with --follow)."""
    try:
        stream, step = _target(where)
    except OrchestratorError as exc:
        fail(exc)
    if follow:
        sys.exit(_follow(run_id, stream, step, socket_path, as_json))
    settings = settings_of(state_dir=state_dir)
    try:
        outputs = anyio.run(_stored, settings, run_id, stream, step)
    except OrchestratorError as exc:
        fail(exc)
    if outputs is None:
        click.echo(f"no run {run_id!r} in the run store (fix: `orchestrator status`)", err=True)
        sys.exit(ExitCode.FAILED)
    if as_json:
        click.echo(json.dumps([asdict(o) for o in outputs], indent=2))
        return
    if not outputs:
        click.echo(f"run {run_id}: no finished step{' of ' + where if where else ''} yet", err=True)
    for output in outputs:
        click.echo(render_output(output), nl=False)


async def _stored(
    settings: Settings, run_id: str, stream: str | None, step: str | None
) -> list[StepOutput] | None:
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        if await store.get_run(run_id) is None:
            return None
        return await store.step_outputs(run_id, stream=stream, step=step)


def _follow(
    run_id: str, stream: str | None, step: str | None, socket_path: Path | None, as_json: bool
) -> int:
    async def go(client: ControlClient) -> int:
        async for event in client.subscribe(run_id, from_start=True):
            name = event.get("event")
            if name == "run_finished":
                return ExitCode.OK
            if stream is not None and event.get("stream") != stream:
                continue
            if name == "stream_finished" and stream is not None:
                return ExitCode.OK
            output = step_output(event)
            if output is None or (step is not None and output.step != step):
                continue
            if as_json:
                sys.stdout.write(json.dumps(asdict(output)) + "\n")
            else:
                sys.stdout.write(render_output(output))
            sys.stdout.flush()
            if step is not None and output.status in _FINAL_STEP and not output.phase:
                return ExitCode.OK
        return ExitCode.OK

    return run_client(socket_path, go)
