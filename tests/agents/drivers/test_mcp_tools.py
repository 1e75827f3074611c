"""The per-step MCP tool server, reached by the official MCP client through the
``orchestrator agent-tools`` stdio bridge: the scoped tools, every call through the gate
(scope, stale writes, tool_called events), and a wrong token refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, TextContent

from agents.actions import builtin_registry
from agents.base import ActionContext
from agents.drivers.mcp_tools import serve_step_tools
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.tool_locks import CoordinatorToolLocks
from tests.helpers import events_named

ROOT = Path(__file__).resolve().parents[3]


SCOPE = ("file.read", "file.write")


def _context(workdir: Path) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        stream="s",
        step="step-1",
        agent="claude",
        attempt=1,
        fences={},
        env={},
        workdir=workdir,
    )


@asynccontextmanager
async def bridged(env: dict[str, str], errlog: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator", "agent-tools"],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
    )
    with errlog.open("w") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_an_mcp_client_gets_the_scoped_tools_through_the_gate(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    sink = MemorySink()
    locks = CoordinatorToolLocks(InProcessCoordinator())
    async with (
        serve_step_tools(
            builtin_registry(), locks, EventLog("r", [sink]), _context(tmp_path), SCOPE
        ) as tools,
        bridged(tools.env(), tmp_path / "err.log") as client,
    ):
        listed = await client.list_tools()
        assert sorted(t.name for t in listed.tools) == ["file_read", "file_write"]
        blind = await client.call_tool("file_write", {"path": "counter.txt", "content": "9\n"})
        assert blind.is_error and text_of(blind).startswith("[stale]")
        read = await client.call_tool("file_read", {"path": "counter.txt"})
        assert not read.is_error and text_of(read).endswith("1\n")
        wrote = await client.call_tool("file_write", {"path": "counter.txt", "content": "2\n"})
        assert not wrote.is_error, text_of(wrote)
        outside = await client.call_tool("docker_restart", {"container": "redis"})
        assert outside.is_error and "outside the scope of agent 'claude'" in text_of(outside)
    assert (tmp_path / "counter.txt").read_text() == "2\n"
    statuses = [(e["tool"], e["status"]) for e in events_named(sink.events, "tool_called")]
    assert statuses == [
        ("file.write", "stale"),
        ("file.read", "ok"),
        ("file.write", "ok"),
        ("docker.restart", "refused"),
    ]
    assert len(tools.session.undo) == 1
    assert not tools.socket.exists() and not tools.config.exists()


async def test_the_mcp_config_names_the_bridge_with_the_server(tmp_path: Path) -> None:
    locks = CoordinatorToolLocks(InProcessCoordinator())
    async with serve_step_tools(
        builtin_registry(), locks, EventLog("r", [MemorySink()]), _context(tmp_path), SCOPE
    ) as tools:
        assert tools.config.parent == tools.socket.parent
        assert stat.S_IMODE(tools.config.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(tools.config.stat().st_mode) == 0o600
        bridge = json.loads(tools.config.read_text())["mcpServers"]["orchestrator"]
        assert bridge["args"] == ["-m", "orchestrator", "agent-tools"]
        assert bridge["env"] == tools.env()
    assert not tools.config.parent.exists()


async def test_a_wrong_token_gets_nothing(tmp_path: Path) -> None:
    locks = CoordinatorToolLocks(InProcessCoordinator())
    async with serve_step_tools(
        builtin_registry(), locks, EventLog("r", [MemorySink()]), _context(tmp_path), SCOPE
    ) as tools:
        env = {**tools.env(), "ORCH_TOOLS_TOKEN": "not-the-token"}
        with anyio.fail_after(60):
            proc = await anyio.run_process(
                [sys.executable, "-m", "orchestrator", "agent-tools"],
                input=b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}\n',
                env={"PATH": os.environ["PATH"], **env},
                cwd=ROOT,
                check=False,
            )
    assert proc.stdout == b""


def test_the_bridge_says_what_is_missing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "agent-tools"],
        env={"PATH": os.environ["PATH"]},
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 3 and b"ORCH_TOOLS_SOCKET" in proc.stderr


def test_agent_program_drivers_do_not_load_pydantic_ai() -> None:
    # pydantic-ai is the LLM driver's: serving tools to a program only names them.
    code = (
        "import sys, agents.drivers.claude_code, agents.drivers.external, "
        "agents.drivers.mcp_tools, agents.actions.undo_sequence\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic_ai', 'mcp'}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['mcp']"
