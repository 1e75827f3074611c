"""The per-step MCP tool server: an agent program's tools, served by the daemon.

For the duration of one step, :func:`serve_step_tools` serves the agent's scoped tools (its
``can`` actions, named and described as for LLM agents by :mod:`agents.tools.names`:
``file.read`` -> ``file_read``) as an MCP server (the official ``mcp`` package's low-level
server) on a Unix socket of its own (mode 0600, in a private 0700 directory, next to the MCP
config file naming it), behind a per-step token. Every ``tools/call`` goes through a
:class:`~agents.tools.ToolGate` session of the step, exactly like an LLM agent's call: scope,
per-call locks, the stale-write guard, evidence, undo, ``tool_called``. Both agent-program
drivers (``driver: {command: ..., tools: mcp}`` and ``claude_code``) serve their tools
through it.

An agent program reaches it through the ``orchestrator agent-tools`` stdio bridge
(:mod:`orchestrator.cli.agent_tools`), which reads :data:`SOCKET_ENV` and :data:`TOKEN_ENV`
from its environment, sends the token as the connection's first line and then relays
newline-delimited JSON-RPC both ways. A connection whose first line is not the token is
closed without an answer.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage

from agents.base import ActionContext
from agents.registry import ActionRegistry
from agents.tools import LockService, ToolEvents, ToolGate, ToolSession
from agents.tools.names import action_of, tool_name, tool_schema

__all__ = [
    "MCP_SERVER_NAME",
    "SOCKET_ENV",
    "TOKEN_ENV",
    "StepTools",
    "serve_step_tools",
]

SOCKET_ENV = "ORCH_TOOLS_SOCKET"
TOKEN_ENV = "ORCH_TOOLS_TOKEN"
#: The server's name in its MCP config (:attr:`StepTools.config`): clients that prefix tool
#: names with their server's (Claude Code) call them ``mcp__orchestrator__file_read``.
MCP_SERVER_NAME = "orchestrator"
#: Longest JSON-RPC line accepted from a client.
_LINE_LIMIT = 8 * 1024 * 1024
_TOKEN_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class StepTools:
    """A step's tool server while it serves: where it listens (``socket``), the token it
    wants, the MCP config file naming it (``config``, see :func:`_write_mcp_config`), and
    the step's tool ``session`` (its calls' evidence and undo records). :meth:`env` gives
    the socket and token as the variables the bridge reads."""

    socket: Path
    token: str
    config: Path
    session: ToolSession

    def env(self) -> dict[str, str]:
        return {SOCKET_ENV: str(self.socket), TOKEN_ENV: self.token}


def _write_mcp_config(path: Path, env: dict[str, str]) -> None:
    """Write ``path`` (mode 0600: it holds the token), the usual MCP client config naming one
    stdio server, :data:`MCP_SERVER_NAME`: the ``orchestrator agent-tools`` bridge (this
    Python) with ``env`` (the server's variables) in its environment."""
    bridge = {"command": sys.executable, "args": ["-m", "orchestrator", "agent-tools"], "env": env}
    path.touch(mode=0o600)
    path.write_text(json.dumps({"mcpServers": {MCP_SERVER_NAME: bridge}}), encoding="utf-8")


def _server(registry: ActionRegistry, gate: ToolGate, session: ToolSession) -> Server[Any]:
    offered = [registry[name] for name in sorted(session.can) if name in registry]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool_name(a.name),
                    description=a.summary or a.name,
                    input_schema=tool_schema(a),
                )
                for a in offered
            ]
        )

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        action = action_of(params.name, registry)
        outcome = await gate.call(session, action, dict(params.arguments or {}))
        text = f"[{outcome.status}] {outcome.message}"
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            is_error=outcome.status != "ok",
        )

    return Server("orchestrator-step-tools", on_list_tools=list_tools, on_call_tool=call_tool)


async def _serve_connection(server: Server[Any], token: str, conn: SocketStream) -> None:
    async with conn:
        buffered = BufferedByteReceiveStream(conn)
        given = b""
        with anyio.move_on_after(_TOKEN_WAIT_S):
            try:
                given = await buffered.receive_until(b"\n", 256)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound):
                return
        if not secrets.compare_digest(given, token.encode()):
            return
        read_send, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_stream, write_receive = anyio.create_memory_object_stream[SessionMessage](0)

        async def reader() -> None:
            async with read_send:
                while True:
                    try:
                        line = await buffered.receive_until(b"\n", _LINE_LIMIT)
                    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                        return
                    try:
                        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                    except ValueError as exc:
                        await read_send.send(exc)
                        continue
                    await read_send.send(SessionMessage(message))

        async def writer() -> None:
            async with write_receive:
                async for item in write_receive:
                    data = item.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await conn.send(data.encode() + b"\n")

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            await server.run(read_stream, write_stream, server.create_initialization_options())
            tg.cancel_scope.cancel()


@asynccontextmanager
async def serve_step_tools(
    registry: ActionRegistry,
    locks: LockService,
    events: ToolEvents,
    context: ActionContext,
    can: Iterable[str],
) -> AsyncIterator[StepTools]:
    """Serve the ``can`` actions of ``registry`` to the step of ``context`` until the block
    ends (see the module doc): each call through a :class:`~agents.tools.ToolGate` on
    ``locks`` that reports to ``events``. Yields the server's :class:`StepTools`. On exit
    connections still open are closed and the socket and config file are removed."""
    session = ToolSession(context=context, can=frozenset(can))
    gate = ToolGate(registry, locks, events)
    directory = Path(tempfile.mkdtemp(prefix="orch-tools-"))  # 0700
    path = directory / "tools.sock"
    token = secrets.token_urlsafe(32)
    served = StepTools(path, token, directory / "mcp.json", session)
    server = _server(registry, gate, session)
    try:
        _write_mcp_config(served.config, served.env())
        listener = await anyio.create_unix_listener(path)
        try:
            path.chmod(0o600)
            async with anyio.create_task_group() as tg:

                async def handle(conn: SocketStream) -> None:
                    await _serve_connection(server, token, conn)

                tg.start_soon(listener.serve, handle)
                try:
                    yield served
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await listener.aclose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
