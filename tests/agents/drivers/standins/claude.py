"""A stand-in for ``claude -p``: checks the flags the claude-code profile passes, then does
what an agent would through the MCP server in --mcp-config (the official MCP client over
the ``orchestrator agent-tools`` bridge): reads counter.txt, writes it + 1, tries a tool
outside --allowedTools, and prints a ``--output-format json`` result."""

from __future__ import annotations

import argparse
import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import TextContent


def text(result: object) -> str:
    return "".join(c.text for c in getattr(result, "content", []) if isinstance(c, TextContent))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-p", dest="prompt", required=True)
    parser.add_argument("--mcp-config", required=True)
    parser.add_argument("--strict-mcp-config", action="store_true")
    parser.add_argument("--allowedTools", required=True)
    parser.add_argument("--output-format", choices=["json"], required=True)
    parser.add_argument("--append-system-prompt", required=True)
    parser.add_argument("--model")
    parser.add_argument("--max-turns", type=int)
    args = parser.parse_args()
    await anyio.Path("claude-args.json").write_text(json.dumps(vars(args)))
    if "fail" in args.prompt:
        print(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "error_max_turns",
                    "is_error": True,
                    "result": "",
                    "num_turns": 3,
                    "usage": {},
                }
            )
        )
        return
    config = json.loads(await anyio.Path(args.mcp_config).read_text())
    ((name, server),) = config["mcpServers"].items()
    allowed = args.allowedTools.split(",")
    params = StdioServerParameters(
        command=server["command"], args=server["args"], env=server["env"]
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = await session.list_tools()
        assert sorted(f"mcp__{name}__{t.name}" for t in listed.tools) == sorted(allowed)
        read_ = await session.call_tool("file_read", {"path": "counter.txt"})
        n = int(text(read_).split("\n", 1)[1])
        wrote = await session.call_tool(
            "file_write", {"path": "counter.txt", "content": f"{n + 1}\n"}
        )
        assert not wrote.is_error, text(wrote)
        await session.call_tool("command", {"argv": ["rm", "-rf", "."]})
    print(
        json.dumps(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": f"Counter is now {n + 1}.\nDone.",
                "num_turns": 4,
                "usage": {"input_tokens": 1200, "output_tokens": 80},
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main)
    sys.exit(0)
