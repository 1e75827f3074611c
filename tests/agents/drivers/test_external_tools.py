"""``driver: {command: [...], tools: mcp}``: a generic external agent gets the step's MCP tool
server (its address, token and a ready MCP config in its environment) and works through the
daemon's gate. The agent is a real process using the official MCP client over the
``orchestrator agent-tools`` bridge (``standins/mcp_agent.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from orchestrator.scheduler import RunStatus
from tests.helpers import events_named, plan_from, run_plan

STANDIN = Path(__file__).resolve().parent / "standins" / "mcp_agent.py"


def _plan(*, tools: str | None = "mcp", fail_after: bool = False) -> Any:
    driver: dict[str, Any] = {"command": [sys.executable, str(STANDIN)]}
    if tools is not None:
        driver["tools"] = tools
    agents = {
        "scribe": {"class": "io", "can": ["file.read", "file.write"], "driver": driver},
        "checker": {"class": "io", "can": ["command"]},
    }
    steps: list[dict[str, Any]] = [
        {"id": "note", "agent": "scribe", "instruction": "Remember the milk"}
    ]
    if fail_after:
        steps.append(
            {"id": "check", "agent": "checker", "action": "command", "with": {"argv": ["false"]}}
        )
    streams = [{"id": "s", "team": ["scribe", "checker"], "steps": steps}]
    return plan_from(streams, agents=agents, caps={"io": 2})


async def test_a_command_agent_works_through_the_daemons_tools(tmp_path: Path) -> None:
    result, events = await run_plan(_plan(), workdir=tmp_path)
    finished = events_named(events, "step_finished", step="note")
    assert result.status is RunStatus.SUCCEEDED, finished
    assert (tmp_path / "note.txt").read_text() == "Remember the milk\n"
    metrics = finished[0]["metrics"]
    assert metrics["tools"] == "file_read,file_write"  # exactly its `can`
    calls = [(e["tool"], e["status"], e["agent"]) for e in events_named(events, "tool_called")]
    assert calls == [("file.write", "ok", "scribe"), ("command", "refused", "scribe")]
    assert metrics["refused"].startswith("[refused]")
    assert not await anyio.Path(metrics["config"]).exists()  # the config (with its token) is gone
    assert "token=***" in finished[0]["stderr_tail"]  # the tool server's token is a secret
    verified = [e for e in events_named(events, "evidence_collected") if e["source"] != "agent"]
    assert verified, events_named(events, "evidence_collected")


async def test_without_tools_mcp_no_tool_server_is_served(tmp_path: Path) -> None:
    result, events = await run_plan(_plan(tools=None), workdir=tmp_path)
    finished = events_named(events, "step_finished", step="note")
    assert result.status is not RunStatus.SUCCEEDED
    assert finished[0]["reason"] == "agent reported failure: no ORCH_MCP_CONFIG"
    assert events_named(events, "tool_called") == []


async def test_rollback_undoes_what_the_agents_tool_calls_changed(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("old\n")
    result, events = await run_plan(_plan(fail_after=True), workdir=tmp_path)
    assert result.status is not RunStatus.SUCCEEDED
    undo = events_named(events, "step_finished", step="note.undo")
    assert undo and undo[0]["status"] == "succeeded", events_named(events, "step_finished")
    calls = [(e["tool"], e["status"]) for e in events_named(events, "tool_called")]
    assert calls == [("file.read", "ok"), ("file.write", "ok"), ("command", "refused")]
    assert (tmp_path / "note.txt").read_text() == "old\n"
