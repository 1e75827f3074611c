"""``orchestrator agent-tools``: the stdio bridge to a step's MCP tool server.

An agent program started by the daemon (Claude Code with ``--mcp-config``, any MCP client)
runs this as its MCP server. It connects to the Unix socket named by ``ORCH_TOOLS_SOCKET``,
sends ``ORCH_TOOLS_TOKEN`` as the first line, then relays bytes: stdin to the socket and
the socket to stdout, until either side closes. The daemon's side
(:mod:`agents.drivers.mcp_tools`) runs every call through the step's tool gate. Exit status
3 when the variables are missing or nothing listens there.
"""

from __future__ import annotations

import os
import sys

import anyio
import click
from anyio.abc import ByteStream

__all__ = ["agent_tools"]

_SOCKET_ENV = "ORCH_TOOLS_SOCKET"
_TOKEN_ENV = "ORCH_TOOLS_TOKEN"
_CONNECT_S = 10.0
_CHUNK = 64 * 1024


async def _bridge(socket: str, token: str) -> None:
    with anyio.fail_after(_CONNECT_S):
        conn: ByteStream = await anyio.connect_unix(socket)
    async with conn:
        await conn.send(token.encode() + b"\n")
        stdin = anyio.wrap_file(sys.stdin.buffer)
        stdout = sys.stdout.buffer

        async def upstream() -> None:
            while chunk := await stdin.read1(_CHUNK):
                await conn.send(chunk)
            await conn.send_eof()

        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream)
            try:
                while True:
                    data = await conn.receive(_CHUNK)
                    stdout.write(data)
                    stdout.flush()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            tg.cancel_scope.cancel()


@click.command("agent-tools")
def agent_tools() -> None:
    """Relay MCP over stdio to the current step's tool server (for agent programs)."""
    socket, token = os.environ.get(_SOCKET_ENV), os.environ.get(_TOKEN_ENV)
    if not socket or not token:
        click.echo(
            f"agent-tools: {_SOCKET_ENV} and {_TOKEN_ENV} are not set; the daemon sets them "
            "for an agent program whose step serves tools",
            err=True,
        )
        sys.exit(3)
    try:
        anyio.run(_bridge, socket, token)
    except (OSError, TimeoutError) as exc:
        click.echo(f"agent-tools: cannot reach the step's tool server at {socket}: {exc}", err=True)
        sys.exit(3)
