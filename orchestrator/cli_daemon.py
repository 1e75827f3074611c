"""CLI commands that run or talk to the daemon: thin clients of the control socket.

``submit`` prints the run id alone on stdout (messages go to stderr) and with ``--wait``
exits like ``run``: 0 succeeded, 1 failed, 2 invalid plan. ``status``, ``agents`` and
``locks`` take ``--json``; ``watch --json`` prints the run's events as JSON lines from its
start and ends when the run ends.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.table import Table

from agents.actions import builtin_registry
from foundation.errors import OrchestratorError, first_orchestrator_error
from foundation.status import ExitCode
from orchestrator.client import ControlClient
from orchestrator.daemon import run_daemon
from orchestrator.progress import progress_sink
from orchestrator.settings import Settings

__all__ = ["register"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

def _socket_option(func: F) -> F:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Control socket (env ORCH_SOCKET).",
    )(func)


def _json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def _run_client(
    settings_of: Callable[..., Settings],
    socket_path: Path | None,
    func: Callable[[ControlClient], Coroutine[Any, Any, T]],
) -> T:
    settings = settings_of(socket=socket_path)
    client = ControlClient(settings.socket_path(), connect_wait_s=settings.connect_wait_s)
    try:
        return anyio.run(func, client)
    except OrchestratorError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)


def register(cli: click.Group, settings_of: Callable[..., Settings]) -> None:
    """Add the daemon commands to ``cli``; ``settings_of(**flags)`` builds the settings."""

    @cli.command()
    @_socket_option
    @click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where runs, the SQLite store and event logs live (env ORCH_STATE_DIR).",
    )
    @click.option(
        "--store",
        default=None,
        help="Run store: a SQLite path (default <state-dir>/runs.db) or a "
        "postgresql:// DSN (env ORCH_STORE).",
    )
    @click.option(
        "--redis", "redis_url", default=None, help="Coordinate through Redis (env ORCH_REDIS_URL)."
    )
    @click.option("--lease-s", type=float, default=None, help="Redis lease period (s).")
    @click.option(
        "--http",
        "http_address",
        default=None,
        help="Serve the web dashboard on HOST:PORT (loopback; token: <state-dir>/http-token).",
    )
    @click.option(
        "--http-allow-remote",
        is_flag=True,
        help="Allow a non-loopback --http address (plain HTTP: only behind TLS or a tunnel).",
    )
    def daemon(
        socket_path: Path | None,
        state_dir: Path | None,
        store: str | None,
        redis_url: str | None,
        lease_s: float | None,
        http_address: str | None,
        http_allow_remote: bool,
    ) -> None:
        """Run the daemon in the foreground until SIGTERM (systemd- and container-friendly)."""
        settings = settings_of(
            socket=socket_path,
            state_dir=state_dir,
            store=store,
            redis_url=redis_url,
            lease_s=lease_s,
        )
        try:
            http = None
            if http_address is not None:
                from orchestrator.web.app import parse_address

                http = parse_address(http_address, allow_remote=http_allow_remote)
            anyio.run(partial(run_daemon, settings, builtin_registry(), http=http))
        except (OrchestratorError, BaseExceptionGroup) as exc:
            error = first_orchestrator_error(exc)
            if error is None:
                raise
            click.echo(str(error), err=True)
            sys.exit(error.exit_code)

    @cli.command()
    @click.argument("plan_file", type=click.Path(path_type=Path))
    @_socket_option
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
            async for event in client.subscribe(run_id, from_start=True):
                if event.get("event") == "run_finished":
                    status = str(event.get("status"))
            click.echo(f"run {run_id}: {status}", err=True)
            return ExitCode.of_status(status)

        sys.exit(_run_client(settings_of, socket_path, go))

    @cli.command()
    @click.argument("run_id")
    @_socket_option
    @_json_option
    @click.option("--plain", is_flag=True, help="Plain lines even on a terminal.")
    def watch(run_id: str, socket_path: Path | None, as_json: bool, plain: bool) -> None:
        """Follow RUN_ID live: one row per stream (or its events as JSON lines)."""
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

        sys.exit(_run_client(settings_of, socket_path, go))

    @cli.command()
    @click.argument("run_id", required=False)
    @_socket_option
    @_json_option
    @click.option("--limit", type=int, default=20, help="How many runs to list.")
    def status(run_id: str | None, socket_path: Path | None, as_json: bool, limit: int) -> None:
        """List runs, or show RUN_ID's streams and steps."""

        async def go(client: ControlClient) -> Any:
            if run_id is None:
                return await client.call("runs.list", {"limit": limit})
            return await client.call("runs.get", {"run_id": run_id})

        reply = _run_client(settings_of, socket_path, go)
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
        table = Table(
            "stream", "step", "status", "attempt", "agent", "duration", "reason", box=None
        )
        for stream in reply["streams"]:
            table.add_row(
                stream["stream"], "", stream["status"], "", "", "", stream["reason"] or ""
            )
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

    @cli.command()
    @click.option("--run", "run_id", default=None, help="Only this run's agents.")
    @_socket_option
    @_json_option
    def agents(run_id: str | None, socket_path: Path | None, as_json: bool) -> None:
        """Each agent of the active runs: state, current step, locks held, waits."""

        async def go(client: ControlClient) -> Any:
            return await client.call("agents.list", {"run_id": run_id} if run_id else {})

        reply = _run_client(settings_of, socket_path, go)
        if as_json:
            click.echo(json.dumps(reply, indent=2))
            return
        table = Table(
            "run", "agent", "class", "state", "step", "locks held", "waiting for", box=None
        )
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

    @cli.command()
    @_socket_option
    @_json_option
    def locks(socket_path: Path | None, as_json: bool) -> None:
        """Lock holders with fencing tokens, queues per resource, class slots in use."""

        async def go(client: ControlClient) -> Any:
            return await client.call("locks.list")

        reply = _run_client(settings_of, socket_path, go)
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

    @cli.command()
    @click.argument("run_id")
    @_socket_option
    def cancel(run_id: str, socket_path: Path | None) -> None:
        """Cancel RUN_ID: running steps are stopped and the run records how it ended."""

        async def go(client: ControlClient) -> Any:
            return await client.call("runs.cancel", {"run_id": run_id})

        reply = _run_client(settings_of, socket_path, go)
        click.echo(f"run {reply['run_id']}: {reply['status']}", err=True)

    @cli.command()
    @_socket_option
    @click.option(
        "--start-daemon",
        is_flag=True,
        help="Start a detached daemon if none answers (its log: <state dir>/daemon.log).",
    )
    def mcp(socket_path: Path | None, start_daemon: bool) -> None:
        """Serve the daemon's tools to an MCP client (e.g. Claude Code) on stdin/stdout."""
        from orchestrator.mcp_server import serve  # imports `mcp` only for this command

        settings = settings_of(socket=socket_path)
        try:
            anyio.run(serve, settings, start_daemon)
        except (OrchestratorError, BaseExceptionGroup) as exc:
            error = first_orchestrator_error(exc)
            if error is None:
                raise
            click.echo(str(error), err=True)
            sys.exit(error.exit_code)
