"""A generic external agent (``driver: {command: [...], tools: mcp}``) that works through the
daemon's tools: it reads its request on stdin, starts the MCP server named in
``$ORCH_MCP_CONFIG`` (the ``orchestrator agent-tools`` bridge) with the official MCP client,
lists its tools, writes ``note.txt`` (reading it first if it exists), tries ``command``
(outside its scope), and answers with what it saw. Without ``ORCH_MCP_CONFIG`` it
answers ``failed``."""

from __future__ import annotations

import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import TextContent


def text(result: object) -> str:
    return "".join(c.text for c in getattr(result, "content", []) if isinstance(c, TextContent))


def answer(status: str, summary: str, metrics: dict[str, float | str]) -> None:
    print(json.dumps({"protocol": 1, "status": status, "summary": summary, "metrics": metrics}))


async def main() -> None:
    request = json.loads(sys.stdin.read())
    path = os.environ.get("ORCH_MCP_CONFIG")
    if path is None:
        answer("failed", "no ORCH_MCP_CONFIG", {})
        return
    print(f"token={os.environ['ORCH_TOOLS_TOKEN']}", file=sys.stderr)  # scrubbed by the daemon
    config = json.loads(await anyio.Path(path).read_text())
    server = config["mcpServers"]["orchestrator"]
    assert server["env"]["ORCH_TOOLS_SOCKET"] == os.environ["ORCH_TOOLS_SOCKET"]
    params = StdioServerParameters(
        command=server["command"], args=server["args"], env=server["env"]
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = sorted(t.name for t in (await session.list_tools()).tools)
        if await anyio.Path("note.txt").exists():  # the stale-write guard: read before writing
            await session.call_tool("file_read", {"path": "note.txt"})
        wrote = await session.call_tool(
            "file_write", {"path": "note.txt", "content": request["instruction"] + "\n"}
        )
        refused = await session.call_tool("command", {"argv": ["rm", "-rf", "."]})
    answer(
        "succeeded" if not wrote.is_error else "failed",
        text(wrote),
        {"tools": ",".join(listed), "refused": text(refused)[:200], "config": path},
    )


if __name__ == "__main__":
    anyio.run(main)
