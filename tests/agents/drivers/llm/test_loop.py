"""The LLM driver's loop on pydantic-ai FunctionModels: tools through the gate, the report
verdict, a plain answer, scope refusal, budgets, a model that never stops, and undo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agents.actions import builtin_registry
from agents.drivers.llm import TokenBudget
from orchestrator.events import MemorySink
from streams.model import LlmSpec
from tests.agents.drivers.llm.conftest import llm_spec, make_call, make_driver
from tests.helpers import events_named

Brain = Any


def factory(brain: Brain) -> Any:
    def make(spec: LlmSpec, key: str | None) -> Model:
        return FunctionModel(brain)

    return make


def returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [
        p
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]


def call(tool: str, **args: Any) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool, json.dumps(args))])


def edit_then_report(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = returns(messages)
    if not done:
        return call("file_read", path="counter.txt")
    if len(done) == 1:
        n = int(str(done[0].content).split("\n", 1)[1])
        return call("file_write", path="counter.txt", content=f"{n + 1}\n")
    if len(done) == 2:
        return call("file_write", path="notes.txt", content="bumped\n")
    return call(
        "report",
        status="succeeded",
        summary="counter bumped",
        metrics={"counter": 2},
        evidence=[{"check": "counter read back", "excerpt": "2"}],
    )


async def test_tools_run_through_the_gate_and_report_ends_the_step(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    result = await make_driver(factory(edit_then_report)).perform(make_call(tmp_path, sink))
    assert result.ok and result.summary == "counter bumped"
    assert (tmp_path / "counter.txt").read_text() == "2\n"
    assert result.metrics == {"counter": 2}
    assert result.usage.requests == 4 and result.usage.input_tokens > 0
    verified = [e for e in result.evidence if e.verified]
    claimed = [e for e in result.evidence if not e.verified]
    assert len(verified) == 3 and [e.check for e in claimed] == ["counter read back"]
    calls = events_named(sink.events, "tool_called")
    assert [(e["tool"], e["status"]) for e in calls] == [
        ("file.read", "ok"),
        ("file.write", "ok"),
        ("file.write", "ok"),
    ]
    assert all(e["agent"] == "writer" and e["step"] == "step-1" for e in calls)


async def test_rollback_undoes_the_agents_file_changes_in_reverse(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    driver = make_driver(factory(edit_then_report))
    call_ = make_call(tmp_path, sink)
    result = await driver.perform(call_)
    assert result.undo is not None and result.undo.action == "undo.sequence"
    undo = builtin_registry().get_action(result.undo.action)
    undone = await undo.run(call_.context, undo.params.model_validate(dict(result.undo.params)))
    assert undone.ok, undone.summary
    assert (tmp_path / "counter.txt").read_text() == "1\n"
    assert not (tmp_path / "notes.txt").exists()


async def test_a_plain_answer_ends_the_step_succeeded_with_its_text(
    tmp_path: Path, sink: MemorySink
) -> None:
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        assert {t.name for t in info.function_tools} == {"file_read", "file_write", "file_edit"}
        assert [t.name for t in info.output_tools] == ["report"]
        return ModelResponse(parts=[TextPart("Nothing to change: the counter is fine.")])

    result = await make_driver(factory(answer)).perform(make_call(tmp_path, sink))
    assert result.ok and result.summary == "Nothing to change: the counter is fine."
    assert result.usage.requests == 1 and result.undo is None


async def test_a_report_of_failure_fails_the_step(tmp_path: Path, sink: MemorySink) -> None:
    def give_up(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return call("report", status="failed", summary="redis is not reachable")

    result = await make_driver(factory(give_up)).perform(make_call(tmp_path, sink))
    assert not result.ok and result.summary == "redis is not reachable"


async def test_a_tool_outside_the_scope_is_refused_and_recorded(
    tmp_path: Path, sink: MemorySink
) -> None:
    def overreach(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:  # the task only: nothing was tried yet
            return call("docker_restart", container="redis")
        return ModelResponse(parts=[TextPart("I may not restart containers.")])

    result = await make_driver(factory(overreach)).perform(
        make_call(tmp_path, sink, can=("file.read",))
    )
    refused = events_named(sink.events, "tool_called", status="refused")
    assert [e["tool"] for e in refused] == ["docker.restart"]
    assert "outside the scope of agent 'writer'" in refused[0]["summary"]
    assert result.ok and result.summary == "I may not restart containers."


async def test_the_gate_message_reaches_the_model_for_a_stale_write(
    tmp_path: Path, sink: MemorySink
) -> None:
    seen: list[str] = []

    def blind_write(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = returns(messages)
        if not done:
            return call("file_write", path="counter.txt", content="99\n")
        seen.append(str(done[0].content))
        return ModelResponse(parts=[TextPart("gave up")])

    (tmp_path / "counter.txt").write_text("1\n")
    await make_driver(factory(blind_write)).perform(make_call(tmp_path, sink))
    assert seen and seen[0].startswith("[stale]")
    assert (tmp_path / "counter.txt").read_text() == "1\n"


def forever(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    return call("file_read", path="counter.txt")


async def test_a_model_that_never_stops_calling_tools_ends_at_max_turns(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    result = await make_driver(factory(forever)).perform(
        make_call(tmp_path, sink, spec=llm_spec(max_turns=5))
    )
    assert not result.ok and result.summary.startswith("max_turns (5 model requests) reached")
    assert result.usage.requests == 5
    assert len(events_named(sink.events, "tool_called")) == 5


async def test_max_tokens_ends_the_step_failed(tmp_path: Path, sink: MemorySink) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    result = await make_driver(factory(forever)).perform(
        make_call(tmp_path, sink, spec=llm_spec(max_tokens=300))
    )
    assert not result.ok and result.summary.startswith("max_tokens (300) reached")
    total = result.usage.input_tokens + result.usage.output_tokens
    # Checked before each request: the next one would resend more than is left.
    assert 0 < total <= 300 and result.usage.requests >= 2


async def test_the_runs_token_budget_is_shared_by_its_steps(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    budget = TokenBudget(400)
    driver = make_driver(factory(forever), budget=budget)
    first = await driver.perform(make_call(tmp_path, sink))
    assert not first.ok and "token_budget ran out" in first.summary
    assert 0 < budget.spent <= 400 and budget.reserved == 0
    # A step's first request has no estimate of its input (known only afterwards), so
    # while any token is left one more step sends one request (FunctionModels ignore
    # max_tokens: its output overshoots too); once spent, no step starts.
    later = [await driver.perform(make_call(tmp_path, sink)) for _ in range(3)]
    assert all(not r.ok and "token_budget" in r.summary for r in later)
    assert all(r.usage.requests <= 1 for r in later)
    assert later[-1].summary == "the run's token_budget is spent"
    assert later[-1].usage.requests == 0


async def test_a_missing_api_key_variable_fails_naming_the_variable(
    tmp_path: Path, sink: MemorySink
) -> None:
    spec = llm_spec(api_key_env="ORCH_TEST_UNSET_KEY_VARIABLE")
    result = await make_driver(factory(forever)).perform(make_call(tmp_path, sink, spec=spec))
    assert not result.ok
    assert result.summary == "the API key variable ORCH_TEST_UNSET_KEY_VARIABLE is not set"


async def test_malformed_tool_calls_past_the_retries_fail_the_step(
    tmp_path: Path, sink: MemorySink
) -> None:
    def garbled(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("file_read", '{"path": "counter.txt"')])

    result = await make_driver(factory(garbled)).perform(make_call(tmp_path, sink))
    assert not result.ok and result.summary.startswith("the model misbehaved")
    assert events_named(sink.events, "tool_called") == []
