"""The claude-code profile in a whole run, against a stand-in ``claude`` program (the real
CLI cannot run here): the flags it gets, its tool calls through the step's MCP tool server
and the gate, its JSON result as the step's, a failure result, and rollback of its edit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio

from orchestrator.scheduler import RunStatus
from tests.helpers import events_named, plan_from, run_plan

STANDIN = Path(__file__).resolve().parent / "standins" / "claude.py"


def _plan(instruction: str, *, fail_after: bool = False) -> Any:
    agents = {
        "claude": {
            "class": "io",
            "can": ["file.read", "file.write"],
            "role": "Keeps the counter.",
            "driver": {"claude_code": {"command": [sys.executable, str(STANDIN)], "max_turns": 7}},
        },
        "checker": {"class": "io", "can": ["command"]},
    }
    steps: list[dict[str, Any]] = [{"id": "bump", "agent": "claude", "instruction": instruction}]
    if fail_after:
        steps.append(
            {"id": "check", "agent": "checker", "action": "command", "with": {"argv": ["false"]}}
        )
    streams = [{"id": "s", "team": ["claude", "checker"], "steps": steps}]
    return plan_from(streams, agents=agents, caps={"io": 2})


async def test_claude_code_works_through_the_daemons_tools(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("4\n")
    result, events = await run_plan(_plan("Add one to counter.txt"), workdir=tmp_path)
    finished = events_named(events, "step_finished", step="bump")
    assert result.status is RunStatus.SUCCEEDED, finished
    assert (tmp_path / "counter.txt").read_text() == "5\n"
    assert finished[0]["reason"] == "Counter is now 5."
    assert finished[0]["usage"] == {"input_tokens": 1200, "output_tokens": 80, "requests": 4}
    args = json.loads((tmp_path / "claude-args.json").read_text())
    assert args["prompt"] == "Add one to counter.txt"
    assert args["allowedTools"] == "mcp__orchestrator__file_read,mcp__orchestrator__file_write"
    assert args["strict_mcp_config"] and args["max_turns"] == 7
    assert "Keeps the counter." in args["append_system_prompt"]
    calls = [(e["tool"], e["status"]) for e in events_named(events, "tool_called")]
    assert calls == [("file.read", "ok"), ("file.write", "ok"), ("command", "refused")]
    assert not await anyio.Path(args["mcp_config"]).exists()  # the config (with its token) is gone


async def test_a_failed_claude_result_fails_the_step(tmp_path: Path) -> None:
    result, events = await run_plan(_plan("This will fail"), workdir=tmp_path)
    finished = events_named(events, "step_finished", step="bump")
    assert result.status is not RunStatus.SUCCEEDED
    assert finished[0]["status"] == "failed" and finished[0]["reason"] == "error_max_turns"


async def test_rollback_undoes_claudes_edit(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("4\n")
    result, events = await run_plan(
        _plan("Add one to counter.txt", fail_after=True), workdir=tmp_path
    )
    assert result.status is not RunStatus.SUCCEEDED
    undo = events_named(events, "step_finished", step="bump.undo")
    assert undo and undo[0]["status"] == "succeeded", undo
    assert (tmp_path / "counter.txt").read_text() == "4\n"
