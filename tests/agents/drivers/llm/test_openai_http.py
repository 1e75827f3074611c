"""The ``openai`` provider against a scripted OpenAI-compatible server (real HTTP, the real
openai client): tool calls, usage figures, 429/500 answers, garbage, a refused connection,
and the API key never leaving the client."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from agents.drivers.llm import build_model
from orchestrator.events import MemorySink
from tests.agents.drivers.llm.conftest import llm_spec, make_call, make_driver
from tests.agents.drivers.llm.openai_server import USAGE, counter_brain, openai_server

KEY = "sk-test-0123456789abcdef0123456789abcdef"


def _env() -> dict[str, str]:
    return {"LLM_TEST_KEY": KEY}


async def test_tool_calls_and_usage_over_real_http(tmp_path: Path, sink: MemorySink) -> None:
    (tmp_path / "counter.txt").write_text("41\n")
    with openai_server(counter_brain) as server:
        spec = llm_spec(base_url=server.base_url, api_key_env="LLM_TEST_KEY")
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert result.ok and result.summary == "The counter is bumped."
    assert (tmp_path / "counter.txt").read_text() == "42\n"
    assert result.usage.requests == 3
    assert result.usage.input_tokens == 3 * USAGE["prompt_tokens"]
    assert result.usage.output_tokens == 3 * USAGE["completion_tokens"]
    first = server.requests[0]
    assert first["model"] == "scripted"
    assert first["messages"][0]["role"] == "system"
    assert "You keep counter.txt." in first["messages"][0]["content"]
    assert first["messages"][-1] == {"role": "user", "content": "Bump the counter"}
    tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(tools) == {"file_read", "file_write", "file_edit", "report"}
    assert "expected_version" not in tools["file_write"]["parameters"]["properties"]
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


async def test_429_and_500_are_retried_with_backoff(tmp_path: Path, sink: MemorySink) -> None:
    (tmp_path / "counter.txt").write_text("1\n")
    with openai_server(counter_brain) as server:
        server.faults.extend(
            [
                (429, json.dumps({"error": {"message": "slow down"}}).encode()),
                (500, json.dumps({"error": {"message": "boom"}}).encode()),
            ]
        )
        spec = llm_spec(base_url=server.base_url, retries=2)
        result = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
    assert result.ok, result.summary
    assert len(server.requests) == 5  # two failures, then read, write, answer
    assert (tmp_path / "counter.txt").read_text() == "2\n"


async def test_past_its_retries_the_step_fails_with_the_providers_message_not_the_key(
    tmp_path: Path, sink: MemorySink
) -> None:
    with openai_server(counter_brain) as server:
        body = json.dumps({"error": {"message": f"overloaded, and your key is {KEY}"}})
        server.faults.extend([(503, body.encode())] * 3)
        spec = llm_spec(base_url=server.base_url, api_key_env="LLM_TEST_KEY", retries=2)
        result = await make_driver(build_model).perform(
            make_call(tmp_path, sink, spec=spec, env=_env())
        )
    assert not result.ok
    assert result.summary.startswith("the model failed 3 time(s); last: HTTP 503")
    assert "overloaded" in result.summary
    assert KEY not in result.summary and KEY not in json.dumps(sink.events, default=str)
    assert len(server.requests) == 3


async def test_garbage_answers_are_retried_then_fail(tmp_path: Path, sink: MemorySink) -> None:
    with openai_server(counter_brain) as server:
        server.faults.extend([(200, b"<html>not json</html>"), (200, b'{"choices": 7}')])
        spec = llm_spec(base_url=server.base_url, retries=1)
        result = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
    assert not result.ok and result.summary.startswith("the model failed 2 time(s)")
    assert len(server.requests) == 2


async def test_a_refused_connection_fails_after_the_retries(
    tmp_path: Path, sink: MemorySink
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = llm_spec(base_url=f"http://127.0.0.1:{port}/v1", retries=1)
    result = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
    assert not result.ok and result.summary.startswith("the model failed 2 time(s)")
    assert "onnect" in result.summary


async def test_a_401_is_not_retried(tmp_path: Path, sink: MemorySink) -> None:
    with openai_server(counter_brain) as server:
        server.faults.append((401, json.dumps({"error": {"message": "bad key"}}).encode()))
        spec = llm_spec(base_url=server.base_url, retries=3)
        result = await make_driver(build_model).perform(make_call(tmp_path, sink, spec=spec))
    assert not result.ok and result.summary.startswith("the model refused the request: HTTP 401")
    assert len(server.requests) == 1
