"""Anthropic LLM agents in a whole recorded run (the in-process run path: scheduler, event
log, SQLite run store): usage on step_finished, and the API key from ``api_key_env`` reaching
the server but never an event, a log line, the store or a failure's message."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from agents.actions import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import MemorySink
from orchestrator.recording import record_run
from orchestrator.runs import execute_plan
from orchestrator.settings import Settings
from orchestrator.store import open_store
from tests.agents.drivers.llm.anthropic_server import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    Fault,
    anthropic_server,
    counter_brain,
    error_body,
)
from tests.helpers import events_named, plan_from

KEY = "sk-ant-run-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
KEY_ENV = "ORCH_TEST_ANTHROPIC_KEY"


def _agent(base_url: str) -> dict[str, Any]:
    llm = {
        "provider": "anthropic",
        "model": "claude-test",
        "base_url": base_url,
        "api_key_env": KEY_ENV,
        "retries": 1,
        "retry_backoff": "10ms",
    }
    return {"class": "io", "can": ["file.read", "file.write"], "driver": {"llm": llm}}


async def test_usage_reaches_step_finished_and_the_key_stays_out_of_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)  # the daemon's environment, not passed to steps
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "counter.txt").write_text("0\n")
    settings = Settings(state_dir=tmp_path / "state", redis_url=None)
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug lines too
    with (
        anthropic_server(counter_brain, key=KEY) as good,
        anthropic_server(counter_brain, key=KEY) as bad,
        capture_logs() as logs,
    ):
        # the failing server puts the key in its error message: it must be scrubbed
        bad.faults.extend([Fault(500, error_body("api_error", f"no luck for {KEY}"))] * 2)
        agents = {"bumper": _agent(good.base_url), "unlucky": _agent(bad.base_url)}
        streams = [
            {"id": "bump", "team": ["bumper"], "steps": ["Add one to counter.txt"]},
            {"id": "fail", "team": ["unlucky"], "steps": ["Add one to counter.txt"]},
        ]
        plan = plan_from(streams, agents=agents, caps={"io": 2})
        memory = MemorySink()
        async with (
            record_run(settings, plan, "plan text", workdir, "run-a") as recorder,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(recorder.write_forever)
            await execute_plan(
                plan,
                run_id="run-a",
                settings=settings,
                coordinator=InProcessCoordinator(),
                registry=builtin_registry(),
                sinks=[recorder, memory],
                workdir=workdir,
            )
            tg.cancel_scope.cancel()
    assert not recorder.failed
    assert (workdir / "counter.txt").read_text() == "1\n"
    (ok,) = events_named(memory.events, "step_finished", stream="bump")
    assert ok["status"] == "succeeded"
    assert ok["usage"] == {
        "input_tokens": 3 * INPUT_TOKENS,
        "output_tokens": 3 * OUTPUT_TOKENS,
        "requests": 3,
    }
    (failed,) = events_named(memory.events, "step_finished", stream="fail")
    assert failed["status"] == "failed"
    assert "the model failed 2 time(s); last: HTTP 500" in json.dumps(failed)
    # The key went to the server with every request...
    for headers in good.headers + bad.headers:
        assert KEY in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    # ... and nowhere else: events, structured logs, stdlib logs, the store's rows and file.
    assert KEY not in json.dumps(memory.events, default=str)
    assert KEY not in json.dumps(logs, default=str)
    assert "/v1/messages" in caplog.text  # the client's debug lines were captured
    assert KEY not in caplog.text
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        stored = list(await store.read_events("run-a", limit=1000))
        record = await store.get_run("run-a")
    assert len(stored) == len(memory.events)
    assert KEY not in json.dumps(stored, default=str) and KEY not in repr(record)
    files = [p for p in settings.state_dir.rglob("*") if p.is_file()]
    assert files  # the SQLite database (and its journal)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
