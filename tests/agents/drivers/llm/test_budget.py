"""The run's ``token_budget`` enforced per model request: reservations never grant more than
is left, a waiting request wakes when another settles, a cancelled request gives its
reservation back, openai requests carry the cap too, and in a whole run of parallel LLM
steps (the scheduler, the real anthropic client, a scripted Messages API server honouring
``max_tokens``) the tokens spent stay within the documented bound while the steps past the
budget fail with the reason."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, UserPromptPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agents.actions import builtin_registry
from agents.drivers.llm import REQUEST_OUTPUT_CAP, MeteredModel, TokenBudget, build_model
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import PriorState, RunStatus, Scheduler, SchedulerConfig
from tests.agents.drivers.llm.anthropic_server import anthropic_server, counter_brain
from tests.agents.drivers.llm.conftest import llm_spec, make_call, make_driver
from tests.agents.drivers.llm.openai_server import counter_brain as counter_brain_openai
from tests.agents.drivers.llm.openai_server import openai_server
from tests.helpers import events_named, plan_from, run_plan

AGENTS = 8
INPUT = 500
OUTPUT = 2000  # per answer, below the request cap: only a budget's cap cuts it
# The eight steps need 3 requests of 2,500 tokens each, 60,000 in all: even with the bound's
# overshoot (8 * INPUT) not all can succeed; and however they interleave, some can.
BUDGET = 50_000


async def test_a_reservation_never_takes_more_than_is_left() -> None:
    budget = TokenBudget(1000)
    assert await budget.reserve(0, 600) == 600
    assert await budget.reserve(100, 400) == 400
    assert budget.reserved == 1000
    budget.settle(600, 150)
    budget.settle(400, 400)
    assert (budget.spent, budget.reserved, budget.remaining()) == (550, 0, 450)
    # nothing else held: what is left, when more than the floor (the input estimate)
    assert await budget.reserve(449, 10_000) == 450
    budget.settle(450, 450)
    assert await budget.reserve(0, 1) == 0  # spent, and nothing held that could come back


async def test_a_request_waits_for_tokens_held_by_others_and_wakes_when_they_settle() -> None:
    budget = TokenBudget(1000)
    held = await budget.reserve(0, 1000)
    got: list[int] = []

    async def waiter() -> None:
        got.append(await budget.reserve(100, 500))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert got == []  # all 1,000 are held by the first request
        budget.settle(held, 300)  # it spent 300: 700 came back
    assert got == [500] and budget.reserved == 500


async def test_a_waiting_request_gets_nothing_once_the_holder_spends_it_all() -> None:
    budget = TokenBudget(1000)
    held = await budget.reserve(0, 1000)
    got: list[int] = []

    async def waiter() -> None:
        got.append(await budget.reserve(0, 500))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        budget.settle(held, 1000)
    assert got == [0]


def test_an_unlimited_budget_grants_what_is_asked_and_counts_what_is_spent() -> None:
    budget = TokenBudget(None)
    assert anyio.run(budget.reserve, 0, 123) == 123
    budget.settle(123, 50)
    assert (budget.spent, budget.reserved, budget.remaining()) == (50, 0, None)


def _agent(base_url: str) -> dict[str, Any]:
    llm = {"provider": "anthropic", "model": "scripted", "base_url": base_url}
    return {"class": "io", "can": ["file.read", "file.write"], "driver": {"llm": llm}}


@pytest.mark.timeout(120)
async def test_parallel_llm_steps_stay_within_the_runs_budget(tmp_path: Path) -> None:
    (tmp_path / "counter.txt").write_text("0\n")
    # The first requests reserve no input estimate and the request cap each: six caps fit
    # in the budget, so six are sent at once and the other two wait until one settles.
    # The server holds the six until all have arrived.
    first = [REQUEST_OUTPUT_CAP] * (BUDGET // REQUEST_OUTPUT_CAP)
    together = threading.Barrier(len(first), timeout=60)
    arrived: list[int] = []
    lock = threading.Lock()

    def brain(request: dict[str, Any]) -> list[dict[str, Any]]:
        with lock:
            arrived.append(request["max_tokens"])
            n = len(arrived)
        if n <= len(first):
            together.wait()
        return counter_brain(request)

    with anthropic_server(brain) as server:
        server.input_tokens, server.output_tokens = INPUT, OUTPUT
        agents = {f"agent-{i}": _agent(server.base_url) for i in range(AGENTS)}
        streams = [
            {"id": f"s{i}", "team": [f"agent-{i}"], "steps": ["Add one to counter.txt"]}
            for i in range(AGENTS)
        ]
        plan = plan_from(streams, agents=agents, caps={"io": AGENTS}, token_budget=BUDGET)
        result, events = await run_plan(plan, workdir=tmp_path)
    finished = events_named(events, "step_finished")
    assert len(finished) == AGENTS
    spent = sum(e["usage"]["input_tokens"] + e["usage"]["output_tokens"] for e in finished)
    billed = sum(i + o for i, o in server.billed)
    assert spent == billed  # every token the server reported is on some step_finished
    # The bound (docs/llm-agents.md): output never passes the budget, since each request's
    # max_tokens is what it could reserve; only input beyond a request's estimate can, at
    # most one request per running step: a first request (no estimate) sends INPUT tokens.
    assert spent <= BUDGET + AGENTS * INPUT, (spent, BUDGET)
    assert all(r["max_tokens"] <= REQUEST_OUTPUT_CAP for r in server.requests)
    assert sorted(arrived[: len(first)]) == first
    ok = [e for e in finished if e["status"] == "succeeded"]
    failed = [e for e in finished if e["status"] != "succeeded"]
    assert ok and failed and result.status is not RunStatus.SUCCEEDED
    assert (tmp_path / "counter.txt").read_text() == f"{len(ok)}\n"
    for event in failed:
        reason = event["reason"]
        assert reason.startswith(
            ("the run's token_budget ran out", "the run's token_budget is spent")
        ), reason


async def test_a_request_cancelled_in_flight_is_charged_its_reservation() -> None:
    async def never_answers(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    budget = TokenBudget(1000)
    model = MeteredModel(FunctionModel(never_answers), budget, None)
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart("go")])]
    async with anyio.create_task_group() as tg:
        tg.start_soon(model.request, messages, None, ModelRequestParameters())
        await anyio.wait_all_tasks_blocked()
        assert budget.reserved == 1000  # alone: it holds what is left, below the cap
        tg.cancel_scope.cancel()
    # It may have been billed with nobody reporting it: charged the worst case, held no more.
    assert (budget.reserved, budget.spent) == (0, 1000)


async def test_a_request_refused_with_an_error_is_charged_nothing() -> None:
    async def refuses(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise ConnectionRefusedError("connection refused")

    budget = TokenBudget(1000)
    model = MeteredModel(FunctionModel(refuses), budget, None)
    messages: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart("go")])]
    with pytest.raises(ConnectionRefusedError):
        await model.request(messages, None, ModelRequestParameters())
    assert (budget.reserved, budget.spent) == (0, 0)


async def test_openai_requests_carry_the_output_cap_the_budget_left(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    budget = TokenBudget(5000)
    with openai_server(counter_brain_openai) as server:
        spec = llm_spec(base_url=server.base_url)
        result = await make_driver(build_model, budget=budget).perform(
            make_call(tmp_path, sink, spec=spec)
        )
    assert result.ok, result.summary
    caps = [r.get("max_completion_tokens", r.get("max_tokens")) for r in server.requests]
    # the first request's cap is all that was left; each next one less what was spent
    assert caps[0] == 5000 and all(c is not None and c < 5000 for c in caps[1:]), caps
    assert budget.spent == result.usage.input_tokens + result.usage.output_tokens


async def test_a_steps_max_tokens_caps_its_requests_and_a_cut_answer_fails_it(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    with anthropic_server(counter_brain) as server:
        server.input_tokens, server.output_tokens = INPUT, OUTPUT
        spec = llm_spec(provider="anthropic", base_url=server.base_url, max_tokens=3000)
        enough = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
        spec = llm_spec(provider="anthropic", base_url=server.base_url, max_tokens=1500)
        cut = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
    # 3000: the first request (cap 3000) spends 2,500; the next would resend 2,500 with 500
    # left, so it is not sent.
    assert not enough.ok and enough.summary.startswith("max_tokens (3000) reached")
    assert enough.usage.requests == 1 and server.requests[0]["max_tokens"] == 3000
    # 1500: the answer is cut at the cap (the server stops at max_tokens): not acted on.
    assert not cut.ok
    assert cut.summary == (
        "max_tokens (1500) reached: the answer was cut at its 1500-token output cap"
    )
    assert server.requests[1]["max_tokens"] == 1500
    assert cut.usage.output_tokens == 1500  # only the input passes the limit
    # the first step's read ran; the cut answer's tool call did not
    assert [e["tool"] for e in events_named(sink.events, "tool_called")] == ["file.read"]


async def test_a_resumed_run_starts_its_budget_from_what_it_spent_before(tmp_path: Path) -> None:
    # Before the daemon stopped, stream s0 spent the whole budget; after the resume, s1's
    # LLM step finds it spent and sends no request (it used to get the budget afresh).
    before = [
        {"event": "stream_started", "stream": "s0"},
        {"event": "step_started", "stream": "s0", "step": "s0-1", "attempt": 1},
        {
            "event": "step_finished",
            "stream": "s0",
            "step": "s0-1",
            "status": "succeeded",
            "attempt": 1,
            "usage": {"input_tokens": BUDGET - 100, "output_tokens": 100, "requests": 3},
        },
        {"event": "stream_finished", "stream": "s0", "status": "succeeded"},
    ]
    prior = PriorState.from_events(before)
    assert prior.tokens_spent == BUDGET
    with anthropic_server(counter_brain) as server:
        agents = {f"agent-{i}": _agent(server.base_url) for i in range(2)}
        streams = [
            {"id": f"s{i}", "team": [f"agent-{i}"], "steps": ["Add one to counter.txt"]}
            for i in range(2)
        ]
        plan = plan_from(streams, agents=agents, caps={"io": 2}, token_budget=BUDGET)
        sink = MemorySink()
        scheduler = Scheduler(
            plan,
            run_id="run-resumed",
            coordinator=InProcessCoordinator(),
            registry=builtin_registry(),
            events=EventLog("run-resumed", [sink]),
            config=SchedulerConfig(workdir=tmp_path, env={"PATH": "/usr/bin:/bin"}),
            prior=prior,
        )
        await scheduler.run()
    (finished,) = events_named(sink.events, "step_finished")
    assert finished["stream"] == "s1" and finished["status"] != "succeeded"
    assert finished["reason"].startswith("the run's token_budget is spent"), finished
    assert server.requests == []
