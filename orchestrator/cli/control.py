"""CLI commands that run or talk to the daemon: thin clients of the control socket.

``submit`` prints the run id alone on stdout (messages go to stderr) and with ``--wait``
exits like ``run``: 0 succeeded, 1 failed, 2 invalid plan. ``status``, ``agents`` and
``locks`` take ``--json``; ``watch --json`` prints the run's events as JSON lines from its
start and ends when the run ends.
"""

from __future__ import annotations

import json
import sys
from contextlib import aclosing
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from foundation.status import ExitCode
from orchestrator.cli._common import json_option, run_client, socket_option
from orchestrator.daemon.client import ControlClient

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
def submit(
    plan_file: Path, socket_path: Path | None, wait: bool, force: bool, history_scope: str
) -> None:
    """Submit PLAN_FILE to the daemon; print the run id."""
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
        click.echo(run_id)
        click.echo(f"submitted plan {reply['plan']} as run {run_id}", err=True)
        if not wait:
            return 0
        status = "unknown"
        # Done at run_finished (stored before it is sent): not after the daemon's wrap-up.
        async with aclosing(client.subscribe(run_id, from_start=True)) as events:
            async for event in events:
                if event.get("event") == "run_finished":
                    status = str(event.get("status"))
                    break
        click.echo(f"run {run_id}: {status}", err=True)
        return ExitCode.of_status(status)

    sys.exit(run_client(socket_path, go))


@click.command()
@click.argument("run_id")
@socket_option
@json_option
@click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
def watch(run_id: str, socket_path: Path | None, as_json: bool, plain: bool) -> None:
    """Follow RUN_ID live: one row per stream (or its events as JSON lines)."""
    from orchestrator.progress import progress_sink  # the plan's models: only watch needs them

    console = Console()

    async def go(client: ControlClient) -> int:
        status = "unknown"
        if as_json:
            async for event in client.subscribe(run_id, from_start=True):
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
                if event.get("event") == "run_finished":
                    status = str(event.get("status"))
            return ExitCode.of_status(status)
        sink = progress_sink(console, sys.stdout, plain=plain)
        with sink:
            async for event in client.subscribe(run_id, from_start=True):
                sink.emit(event)
        status = sink.view.status
        code = ExitCode.of_status(status)
        click.echo(f"run {run_id}: {status} (exit code {code})", err=True)
        return code

    sys.exit(run_client(socket_path, go))


@click.command()
@click.argument("run_id", required=False)
@socket_option
@json_option
@click.option("--limit", type=int, default=20, help="How many runs to list.")
def status(run_id: str | None, socket_path: Path | None, as_json: bool, limit: int) -> None:
    """List runs, or show RUN_ID's streams and steps."""

    async def go(client: ControlClient) -> Any:
        if run_id is None:
            return await client.call("runs.list", {"limit": limit})
        return await client.call("runs.get", {"run_id": run_id})

    reply = run_client(socket_path, go)
    if as_json:
        click.echo(json.dumps(reply, indent=2))
        return
    console = Console()
    if run_id is None:
        table = Table("run", "plan", "status", "created", "finished", box=None)
        for run in reply["runs"]:
            table.add_row(
                run["run_id"],
                run["plan"],
                run["status"],
                run["created_at"] or "",
                run["finished_at"] or "",
            )
        console.print(table)
        return
    console.print(
        f"run {reply['run_id']} ({reply['plan']}): {reply['status']} "
        f"{reply['reason'] or ''}".rstrip()
    )
    table = Table("stream", "step", "status", "attempt", "agent", "duration", "reason", box=None)
    for stream in reply["streams"]:
        table.add_row(stream["stream"], "", stream["status"], "", "", "", stream["reason"] or "")
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
            )
    console.print(table)


@click.command()
@click.option("--run", "run_id", default=None, help="Only this run's agents.")
@socket_option
@json_option
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
    Console().print(table)


@click.command()
@socket_option
@json_option
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
    console.print(table)
    classes = Table("class", "in use", "cap", "waiting", box=None)
    for cls in reply["classes"]:
        cap = "unlimited" if cls["cap"] is None else str(cls["cap"])
        classes.add_row(cls["class"], str(cls["in_use"]), cap, str(cls["waiting"]))
    console.print(classes)


@click.command()
@click.argument("run_id")
@socket_option
def cancel(run_id: str, socket_path: Path | None) -> None:
    """Cancel RUN_ID: running steps are stopped and the run records how it ended."""

    async def go(client: ControlClient) -> Any:
        return await client.call("runs.cancel", {"run_id": run_id})

    reply = run_client(socket_path, go)
    click.echo(f"run {reply['run_id']}: {reply['status']}", err=True)
