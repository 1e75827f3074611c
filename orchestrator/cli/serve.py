"""Commands that serve: ``daemon`` (the daemon in the foreground) and ``mcp`` (its tools
for an MCP client on stdin/stdout)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import click

from agents.actions import builtin_registry
from foundation.errors import OrchestratorError
from orchestrator.cli._common import exit_on_error, settings_of, socket_option
from orchestrator.daemon import run_daemon

__all__ = ["daemon", "mcp"]


@click.command()
@socket_option
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
        exit_on_error(exc)


@click.command()
@socket_option
@click.option(
    "--start-daemon",
    is_flag=True,
    help="Start a detached daemon if none answers (its log: <state dir>/daemon.log).",
)
def mcp(socket_path: Path | None, start_daemon: bool) -> None:
    """Serve the daemon's tools to an MCP client (e.g. Claude Code) on stdin/stdout."""
    from orchestrator.mcp.server import serve  # imports `mcp` only for this command

    settings = settings_of(socket=socket_path)
    try:
        anyio.run(serve, settings, start_daemon)
    except (OrchestratorError, BaseExceptionGroup) as exc:
        exit_on_error(exc)
