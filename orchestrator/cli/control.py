"""CLI commands that run or talk to the daemon: thin clients of the control socket.

``submit`` prints the run id alone on stdout (messages go to stderr) and with ``--wait``
follows the run (the live view on a terminal) and exits like ``run`` (the codes of
:class:`foundation.status.ExitCode`; 5 for a run that was cancelled). Every command takes
``-o json|table``; ``watch -o json`` prints the run's events as JSON lines from its start and
ends when the run ends. Piped tables are never cut to the terminal's width.
"""

from __future__ import annotations

import json
import sys
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from foundation.errors import UsageError
from foundation.status import RUN_STATUSES, ExitCode
from orchestrator.cli._common import (
    fail,
    output_option,
    print_table,
    run_client,
    socket_option,
)
from orchestrator.cli._exit import ExitNow
from orchestrator.daemon.client import ControlClient
from orchestrator.token_usage import format_tokens

__all__ = ["agents", "cancel", "locks", "status", "submit", "watch"]


@click.command()
@click.argument("plan_file", type=click.Path(path_type=Path))
@socket_option
@click.option("--wait", is_flag=True, help="Follow the run to its end; exit like `run`.")
@click.option("--force", is_flag=True, help="Submit even below the plan's min_confidence.")
@click.option(
    "--history",
    "history_scope",
    type=click.Choice(["signature", "plan", "none"]),
    default="signature",
    show_default=True,
    help="Which recorded runs the min_confidence check rests on.",
)
@click.option("--plain", is_flag=True, help="With --wait: plain lines even on a terminal.")
@output_option
def submit(
    plan_file: Path,
    socket_path: Path | None,
    wait: bool,
    force: bool,
    history_scope: str,
    plain: bool,
    as_json: bool,
) -> None:
    """Submit PLAN_FILE to the daemon; print the run id (JSON: run id and plan; with --wait,
    the run's events as JSON lines)."""
    try:
        text = plan_file.read_text(encoding="utf-8")
    except OSError as exc:
        click.echo(f"{plan_file}: cannot read the plan: {exc.strerror}", err=True)
        sys.exit(ExitCode.INVALID)

    plan_path = str(plan_file.resolve())

    async def go(client: ControlClient) -> int:
        reply = await client.call(
            "submit",
            {
                "plan_text": text,
                "plan_path": plan_path,
                "force": force,
                "history": history_scope,
            },
        )
        run_id = str(reply["run_id"])
        click.echo(json.dumps(reply) if as_json else run_id)
        click.echo(f"submitted plan {reply['plan']} as run {run_id}", err=True)
        if not wait:
            return 0
        # The live view (or plain lines) on stderr: stdout stays the run id alone.
        return await _follow(client, run_id, as_json=as_json, plain=plain, to_stderr=True)

    raise ExitNow(run_client(socket_path, go))


async def _follow(
    client: ControlClient, run_id: str, *, as_json: bool, plain: bool, to_stderr: bool = False
) -> int:
    """Follow ``run_id`` to its end: its events as JSON lines, or the live view (plain
    lines when piped or ``plain``; on stderr if ``to_stderr``); return the exit code of how
    it ended."""
    # Done at run_finished (stored before it is sent): not after the daemon's wrap-up.
    if as_json:
        status = "unknown"
        async with aclosing(client.subscribe(run_id, from_start=True)) as events:
            async for event in events:
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
                if event.get("event") == "run_finished":
                    status = str(event.get("status"))
                    break
        return ExitCode.of_status(status)
    from orchestrator.progress import progress_sink  # the plan's models: only followers need them

    out = sys.stderr if to_stderr else sys.stdout
    sink = progress_sink(Console(stderr=to_stderr), out, plain=plain)
    with sink:
        async with aclosing(client.subscribe(run_id, from_start=True)) as events:
            async for event in events:
                sink.emit(event)
                if event.get("event") == "run_finished":
                    break
    status = sink.view.status
    code = ExitCode.of_status(status)
    click.echo(f"run {run_id}: {status} (exit code {int(code)})", err=True)
    return code


@click.command()
@click.argument("run_id")
@socket_option
@output_option
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
def watch(run_id: str, socket_path: Path | None, as_json: bool, plain: bool) -> None:
    """Follow RUN_ID live: one row per stream (or its events as JSON lines)."""

    async def go(client: ControlClient) -> int:
        return await _follow(client, run_id, as_json=as_json, plain=plain)

    raise ExitNow(run_client(socket_path, go))


def _since(value: str | None) -> str | None:
    """``--since``: a duration back from now (``2h``, ``30m``) or an ISO-8601 time, as an
    ISO-8601 UTC time."""
    if value is None:
        return None
    from streams.durations import parse_duration  # only with --since: status stays light

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            back_s = parse_duration(value)
        except ValueError:
            fail(
                UsageError(
                    f"--since {value!r}: neither a duration nor an ISO-8601 time "
                    "(fix: --since 2h, or --since 2026-01-31T12:00:00Z)"
                )
            )
        moment = datetime.now(UTC) - timedelta(seconds=back_s)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _duration(value: Any) -> str:
    from streams.durations import format_duration  # the streams package: not at start-up

    return format_duration(float(value)) if value is not None else ""


@click.command()
@click.argument("run_id", required=False)
@socket_option
@output_option
@click.option("--limit", type=int, default=20, help="How many runs to list.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in RUN_STATUSES]),
    help="Only runs in this status (repeatable).",
)
@click.option("--plan", default=None, help="Only runs of this plan (its `plan:` id).")
@click.option("--since", default=None, help="Only runs created since: 2h, 30m, or ISO time.")
def status(
    run_id: str | None,
    socket_path: Path | None,
    as_json: bool,
    limit: int,
    statuses: tuple[str, ...],
    plan: str | None,
    since: str | None,
) -> None:
    """List runs (newest first, with durations), or show RUN_ID's streams and steps."""
    since_iso = _since(since)

    async def go(client: ControlClient) -> Any:
        if run_id is None:
            params: dict[str, Any] = {"limit": limit}
            if statuses:
                params["status"] = list(statuses)
            if plan is not None:
                params["plan"] = plan
            if since_iso is not None:
                params["since"] = since_iso
            return await client.call("runs.list", params)
        return await client.call("runs.get", {"run_id": run_id})

    reply = run_client(socket_path, go)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    console = Console()
    if run_id is None:
        table = Table("run", "plan", "status", "created", "finished", "duration", box=None)
        for run in reply["runs"]:
            table.add_row(
                run["run_id"],
                run["plan"],
                run["status"],
                run["created_at"] or "",
                run["finished_at"] or "",
                _duration(run.get("duration_s")),
            )
        print_table(table, console)
        return
    # Tokens only when the run made model calls: other runs' views are unchanged.
    tokens = format_tokens(reply.get("usage"))
    console.print(
        f"run {reply['run_id']} ({reply['plan']}): {reply['status']} "
        f"{reply['reason'] or ''}".rstrip()
        + (f" (tokens: {tokens})" if tokens else ""),
        soft_wrap=True,  # one line, however long: scripts read it
    )
    columns = ["stream", "step", "status", "attempt", "agent", "duration", "reason"]
    table = Table(*columns, *(["tokens"] if tokens else []), box=None)
    for stream in reply["streams"]:
        row = [stream["stream"], "", stream["status"], "", "", "", stream["reason"] or ""]
        table.add_row(*row, *([format_tokens(stream.get("usage"))] if tokens else []))
        for step in stream["steps"]:
            duration = f"{step['duration_s']:.2f}s" if step["duration_s"] is not None else ""
            table.add_row(
                "",
                step["step"],
                step["status"],
                str(step["attempt"]),
                step["agent"] or "",
                duration,
                step["reason"] or "",
                *([""] if tokens else []),
            )
    print_table(table, console)


@click.command()
@click.option("--run", "run_id", default=None, help="Only this run's agents.")
@socket_option
@output_option
def agents(run_id: str | None, socket_path: Path | None, as_json: bool) -> None:
    """Each agent of the active runs: state, current step, locks held, waits."""

    async def go(client: ControlClient) -> Any:
        return await client.call("agents.list", {"run_id": run_id} if run_id else {})

    reply = run_client(socket_path, go)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    table = Table("run", "agent", "class", "state", "step", "locks held", "waiting for", box=None)
    for agent in reply["agents"]:
        table.add_row(
            agent["run_id"],
            agent["agent"],
            agent["resource_class"],
            agent["state"],
            ", ".join(r["step"] for r in agent["running"]),
            ", ".join(f"{k}#{v}" for k, v in agent["locks_held"].items()),
            "; ".join(w for item in agent["waiting"] for w in item["for"]),
        )
    print_table(table)


@click.command()
@socket_option
@output_option
def locks(socket_path: Path | None, as_json: bool) -> None:
    """Lock holders with fencing tokens, queues per resource, class slots in use."""

    async def go(client: ControlClient) -> Any:
        return await client.call("locks.list")

    reply = run_client(socket_path, go)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    table = Table("resource", "holder", "fence", "last fence", "queue", box=None)
    for res in reply["resources"]:
        holder = res["holder"]["holder"] if res["holder"] else "-"
        queue = ", ".join(w["holder"] for w in res["queue"]) or "-"
        table.add_row(
            res["resource"],
            holder,
            str(res["fence"] or "-"),
            str(res["last_fence"] or "-"),
            queue,
        )
    console = Console()
    print_table(table, console)
    classes = Table("class", "in use", "cap", "waiting", box=None)
    for cls in reply["classes"]:
        cap = "unlimited" if cls["cap"] is None else str(cls["cap"])
        classes.add_row(cls["class"], str(cls["in_use"]), cap, str(cls["waiting"]))
    print_table(classes, console)


@click.command()
@click.argument("run_id")
@socket_option
@output_option
def cancel(run_id: str, socket_path: Path | None, as_json: bool) -> None:
    """Cancel RUN_ID: running steps are stopped, started streams roll back, and the run
    records how it ended (JSON: run id and status)."""

    async def go(client: ControlClient) -> Any:
        return await client.call("runs.cancel", {"run_id": run_id})

    click.echo(
        f"run {run_id}: cancelling: stopping its steps; started streams are rolling back "
        "(waiting for them)...",
        err=True,
    )
    reply = run_client(socket_path, go)
    if as_json:
        click.echo(json.dumps(reply))
    click.echo(f"run {reply['run_id']}: {reply['status']}", err=True)
