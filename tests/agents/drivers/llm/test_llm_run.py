"""LLM agents in a whole run (the scheduler the daemon runs): eight agents on a scripted
OpenAI-compatible server increment one counter file at once and end at 8, their usage on
step_finished; a plan's rollback undoes an agent's file edits."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from orchestrator.scheduler import RunStatus
from tests.agents.drivers.llm.openai_server import USAGE, counter_brain, openai_server
from tests.helpers import events_named, plan_from, run_plan

AGENTS = 8


def _llm(base_url: str) -> dict[str, Any]:
    return {"llm": {"provider": "openai", "model": "scripted", "base_url": base_url}}


async def test_eight_llm_agents_increment_one_counter_to_eight(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("0\n")
    barrier = threading.Barrier(AGENTS, timeout=60)

    def everyone_reads_first(request: dict[str, Any]) -> dict[str, Any]:
        tools = [m for m in request["messages"] if m["role"] == "tool"]
        if len(tools) == 1:  # each agent's first read is back: wait for all of them
            barrier.wait()
        return counter_brain(request)

    with openai_server(everyone_reads_first) as server:
        agents = {
            f"agent-{i}": {
                "class": "io",
                "can": ["file.read", "file.write"],
                "driver": _llm(server.base_url),
            }
            for i in range(1, AGENTS + 1)
        }
        streams = [
            {"id": f"s{i}", "team": [f"agent-{i}"], "steps": ["Add one to counter.txt"]}
            for i in range(1, AGENTS + 1)
        ]
        plan = plan_from(streams, agents=agents, caps={"io": AGENTS})
        result, events = await run_plan(plan, workdir=tmp_path)
    assert result.status is RunStatus.SUCCEEDED, events_named(events, "step_finished")
    assert (tmp_path / "counter.txt").read_text() == f"{AGENTS}\n"
    calls = events_named(events, "tool_called")
    stale = [c for c in calls if c["status"] == "stale"]
    assert len(stale) >= AGENTS - 1  # all read 0 before anyone wrote: all but one were stale
    finished = events_named(events, "step_finished")
    assert len(finished) == AGENTS
    for event in finished:
        usage = event["usage"]
        assert usage["requests"] >= 3
        assert usage["input_tokens"] == usage["requests"] * USAGE["prompt_tokens"]


async def test_rollback_undoes_an_agents_file_edits(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("5\n")
    with openai_server(counter_brain) as server:
        agents = {
            "writer": {
                "class": "io",
                "can": ["file.read", "file.write"],
                "driver": _llm(server.base_url),
            },
            "checker": {"class": "io", "can": ["command"]},
        }
        steps = [
            {"id": "bump", "agent": "writer", "instruction": "Add one to counter.txt"},
            {"id": "check", "agent": "checker", "action": "command", "with": {"argv": ["false"]}},
        ]
        streams = [{"id": "s", "team": ["writer", "checker"], "steps": steps}]
        plan = plan_from(streams, agents=agents, caps={"io": 2})
        result, events = await run_plan(plan, workdir=tmp_path)
    assert result.status is not RunStatus.SUCCEEDED
    undo = events_named(events, "step_finished", step="bump.undo")
    assert undo and undo[0]["status"] == "succeeded", undo
    assert (tmp_path / "counter.txt").read_text() == "5\n"
