"""The ``anthropic`` provider against a scripted Messages API server (real HTTP, the real
anthropic client through pydantic-ai's AnthropicModel): tool calls through the gate, the
final text, the report tool, usage, 429/500/529 answers, garbage, streamed answers, and the
API key going to the server and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.drivers.llm import build_model
from orchestrator.events import MemorySink
from streams.model import LlmSpec
from tests.agents.drivers.llm.anthropic_server import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Fault,
    anthropic_server,
    counter_brain,
    error_body,
    result_text,
    text,
    tool_results,
    tool_use,
)
from tests.agents.drivers.llm.conftest import llm_spec, make_call, make_driver
from tests.helpers import events_named

KEY = "sk-ant-test-0123456789abcdef0123456789abcdef"
KEY_ENV = "ANTHROPIC_TEST_KEY"


def _env() -> dict[str, str]:
    return {KEY_ENV: KEY}


def _spec(base_url: str, **extra: Any) -> LlmSpec:
    fields: dict[str, Any] = {
        "provider": "anthropic",
        "model": "scripted",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
    }
    return llm_spec(**{**fields, **extra})


async def test_a_tool_call_runs_through_the_gate_and_the_text_ends_the_step(
    tmp_path: Path, sink: MemorySink
) -> None:
    (tmp_path / "counter.txt").write_text("41\n")
    with anthropic_server(counter_brain, key=KEY) as server:
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=_spec(server.base_url), env=_env())
        )
    assert result.ok and result.summary == "The counter is bumped."
    assert (tmp_path / "counter.txt").read_text() == "42\n"
    calls = events_named(sink.events, "tool_called")
    assert [(e["tool"], e["status"]) for e in calls] == [("file.read", "ok"), ("file.write", "ok")]
    assert result.usage.requests == 3
    assert result.usage.input_tokens == 3 * INPUT_TOKENS
    assert result.usage.output_tokens == 3 * OUTPUT_TOKENS
    assert server.paths == ["/v1/messages"] * 3
    first, second = server.requests[0], server.requests[1]
    assert first["model"] == "scripted" and first["max_tokens"] > 0
    assert "You keep counter.txt." in json.dumps(first["system"])
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Bump the counter"}]}
    ]
    tools = {t["name"]: t for t in first["tools"]}
    assert set(tools) == {"file_read", "file_write", "file_edit", "report"}
    assert "expected_version" not in tools["file_write"]["input_schema"]["properties"]
    # The tool_use block goes back as the assistant's turn, its result in the next user turn.
    assert second["messages"][1]["content"][0]["type"] == "tool_use"
    (read,) = tool_results(second)
    assert read["tool_use_id"] == second["messages"][1]["content"][0]["id"]
    assert result_text(read).startswith("[ok] read counter.txt") and not read.get("is_error")
    for headers in server.headers:
        # anthropic 2.16 sends the key as a bearer token; the server takes either header
        assert KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
        assert headers["anthropic-version"]
        assert headers["x-stainless-retry-count"] == "0"  # the SDK never retried by itself


async def test_the_report_tool_ends_the_step_with_its_verdict(
    tmp_path: Path, sink: MemorySink
) -> None:
    def report(request: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"type": "text", "text": "Measured it."},
            *tool_use(
                request,
                "report",
                status="failed",
                summary="p95 is 40 ms over the limit",
                metrics={"p95_ms": 140},
                evidence=[{"check": "bench run", "excerpt": "p95=140ms"}],
            ),
        ]

    with anthropic_server(report) as server:
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=_spec(server.base_url), env=_env())
        )
    assert not result.ok and result.summary == "p95 is 40 ms over the limit"
    assert result.metrics == {"p95_ms": 140}
    assert [(e.check, e.verified) for e in result.evidence] == [("bench run", False)]
    assert result.usage.requests == 1 and len(server.requests) == 1


async def test_a_trailing_v1_in_base_url_still_reaches_the_messages_endpoint(
    tmp_path: Path, sink: MemorySink
) -> None:
    with anthropic_server(lambda request: text("ok")) as server:
        spec = _spec(server.base_url + "/v1/")
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert result.ok and server.paths == ["/v1/messages"]


async def test_a_streamed_answer_of_a_real_model_name_is_read_whole(
    tmp_path: Path, sink: MemorySink
) -> None:
    """pydantic-ai streams a request whose default max_tokens is a real model's large
    maximum output (claude-sonnet-4-5): the server answers with server-sent events."""
    (tmp_path / "counter.txt").write_text("7\n")
    with anthropic_server(counter_brain) as server:
        spec = _spec(server.base_url, model="claude-sonnet-4-5")
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert result.ok, result.summary
    assert (tmp_path / "counter.txt").read_text() == "8\n"
    assert result.usage.input_tokens == 3 * INPUT_TOKENS
    assert result.usage.output_tokens == 3 * OUTPUT_TOKENS
    assert all(r.get("stream") for r in server.requests)


async def test_429_529_and_500_are_retried_with_backoff(tmp_path: Path, sink: MemorySink) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    with anthropic_server(counter_brain) as server:
        server.faults.extend(
            [
                Fault(429, error_body("rate_limit_error", "slow down"), {"retry-after": "0"}),
                Fault(529, error_body("overloaded_error", "Overloaded")),
                Fault(500, error_body("api_error", "Internal server error")),
            ]
        )
        spec = _spec(server.base_url, retries=3)
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert result.ok, result.summary
    assert len(server.requests) == 6  # three failures, then read, write, answer
    assert (tmp_path / "counter.txt").read_text() == "2\n"
    assert result.usage.requests == 3  # failed attempts spend nothing
    assert all(h["x-stainless-retry-count"] == "0" for h in server.headers)


async def test_500_past_the_retries_fails_the_step_with_the_providers_message(
    tmp_path: Path, sink: MemorySink
) -> None:
    with anthropic_server(counter_brain) as server:
        body = error_body("api_error", f"the backend fell over (key {KEY})")
        server.faults.extend([Fault(500, body)] * 3)
        spec = _spec(server.base_url, retries=2)
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert not result.ok
    assert result.summary.startswith("the model failed 3 time(s); last: HTTP 500")
    assert "the backend fell over" in result.summary
    assert KEY not in result.summary and KEY not in json.dumps(sink.events, default=str)
    assert len(server.requests) == 3


async def test_a_wrong_key_is_refused_and_not_retried(tmp_path: Path, sink: MemorySink) -> None:
    with anthropic_server(counter_brain, key="sk-ant-the-right-one") as server:
        spec = _spec(server.base_url, retries=3)
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert not result.ok
    assert result.summary.startswith("the model refused the request: HTTP 401")
    assert KEY not in result.summary
    assert len(server.requests) == 1


async def test_garbage_bodies_are_retried_then_fail_the_step(
    tmp_path: Path, sink: MemorySink
) -> None:
    with anthropic_server(counter_brain) as server:
        server.faults.extend(
            [
                Fault(200, b"<html>not json</html>"),
                Fault(200, b'{"type": "message", "content": 7}'),
            ]
        )
        spec = _spec(server.base_url, retries=1)
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert not result.ok and result.summary.startswith("the model failed 2 time(s)"), result
    assert len(server.requests) == 2


async def test_a_tool_use_with_invalid_input_is_sent_back_as_an_error_result(
    tmp_path: Path, sink: MemorySink
) -> None:
    """A report whose input breaks its schema goes back to the model as a ``tool_result``
    with ``is_error``; the model then answers properly."""

    def sloppy(request: dict[str, Any]) -> list[dict[str, Any]]:
        results = tool_results(request)
        if not results:
            return tool_use(request, "report", status="maybe", summary=["not", "text"])
        assert results[0]["is_error"] is True
        return tool_use(request, "report", status="succeeded", summary="fixed")

    with anthropic_server(sloppy) as server:
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=_spec(server.base_url), env=_env())
        )
    assert result.ok and result.summary == "fixed"
    (error,) = tool_results(server.requests[1])
    assert "status" in result_text(error)


async def test_a_model_that_keeps_sending_invalid_input_fails_the_step(
    tmp_path: Path, sink: MemorySink
) -> None:
    def broken(request: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "tool_use", "id": "toolu_x", "name": "report", "input": "{not an object"}]

    with anthropic_server(broken) as server:
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=_spec(server.base_url), env=_env())
        )
    assert not result.ok and result.summary.startswith("the model misbehaved"), result.summary
    assert events_named(sink.events, "tool_called") == []
    assert len(server.requests) >= 2
