"""An in-process run's events: built once, written to the file per loop tick, and stored by
the recorder process while the run goes on, in a store a daemon never resumes them from; a
recorder that dies or stalls costs the history, never the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson
from structlog.testing import capture_logs

from orchestrator.events import (
    EventLog,
    EventRecord,
    JsonlSink,
    MemorySink,
    event_line,
    read_events,
)
from orchestrator.recording import record_run
from orchestrator.settings import Settings
from orchestrator.store import IN_PROCESS_ORIGIN, RunRecord, RunStatus, open_store
from orchestrator.store._derive import parse_ts
from orchestrator.store.recorder import RecorderHeader
from tests.helpers import plan_from, sleep_step, stream
from tests.test_cli_run import ROOT


def test_a_record_keeps_its_line_and_time_as_the_store_would_make_them(tmp_path: Path) -> None:
    kept = MemorySink()
    log = EventLog("r1", [kept]).bind(stream="s", step="a")
    log.emit("step_queued", attempt=1, extra={1: "non-string key"})
    (event,) = kept.events
    assert isinstance(event, EventRecord)
    assert list(event)[:6] == ["ts", "seq", "event", "run_id", "stream", "step"]
    assert orjson.loads(event.line()) == {**event, "extra": {"1": "non-string key"}}
    assert event.at == parse_ts(event["ts"])


def test_the_file_is_written_once_per_tick_and_complete_on_close(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    async def main() -> tuple[int, int]:
        sink = JsonlSink(path)
        log = EventLog("r1", [sink])
        for i in range(5):
            log.emit("step_queued", attempt=i)
        before = len(read_events(path))  # same tick: nothing written yet
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        after = len(read_events(path))
        log.emit("run_finished", status="succeeded")
        sink.close()
        return before, after

    before, after = anyio.run(main)
    assert (before, after) == (0, 5)
    assert [e["seq"] for e in read_events(path)] == [1, 2, 3, 4, 5, 6]


def test_events_are_stored_while_the_run_goes_on_and_never_resumed(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis_url=None)
    plan = plan_from([stream("s", [sleep_step("a"), sleep_step("b")])])

    async def stored(run_id: str) -> list[dict[str, Any]]:
        async with open_store(settings.store_url(), state_dir=tmp_path) as store:
            return list(await store.read_events(run_id, limit=100))

    async def main() -> tuple[list[str], list[RunRecord], list[str], RunRecord | None]:
        async with record_run(settings, plan, "text", tmp_path, "run-1") as recorder:
            log = EventLog("run-1", [recorder])
            async with anyio.create_task_group() as tg:
                tg.start_soon(recorder.write_forever)
                log.emit("run_started", plan="test", streams=["s"])
                log.emit("stream_started", stream="s")
                for _ in range(1000):  # written by the recorder's task, not by us
                    if len(await stored("run-1")) == 2:
                        break
                    await anyio.sleep(0.01)
                during = [e["event"] for e in await stored("run-1")]
                async with open_store(settings.store_url(), state_dir=tmp_path) as store:
                    unfinished = await store.unfinished_runs()
                log.emit("stream_finished", stream="s", status="succeeded")
                log.emit("run_finished", status="succeeded", streams={"s": "succeeded"})
                tg.cancel_scope.cancel()
        async with open_store(settings.store_url(), state_dir=tmp_path) as store:
            record = await store.get_run("run-1")
        return during, unfinished, [e["event"] for e in await stored("run-1")], record

    during, unfinished, after, record = anyio.run(main)
    assert during == ["run_started", "stream_started"]
    assert unfinished == []  # running, but origin "orchestrator run": no daemon's to resume
    assert after[-1] == "run_finished"
    assert record is not None and record.status is RunStatus.SUCCEEDED
    assert record.options == {"origin": IN_PROCESS_ORIGIN}


def test_an_event_read_back_from_its_line_keeps_the_line(tmp_path: Path) -> None:
    kept = MemorySink()
    EventLog("r1", [kept]).emit("step_queued", stream="s", step="a", ratio=0.1 + 0.2)
    line = event_line(kept.events[0])
    back = EventRecord.from_line(line.encode())
    assert back == kept.events[0] and event_line(back) == line


def test_a_recorder_that_dies_costs_the_history_not_the_run(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis_url=None)
    plan = plan_from([stream("s", [sleep_step("a")])])

    async def main() -> tuple[bool, int | None]:
        async with record_run(settings, plan, "text", tmp_path, "run-1", timeout_s=10) as recorder:
            log = EventLog("run-1", [recorder])
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(recorder.write_forever)
                    log.emit("run_started", plan="test", streams=["s"])
                    await _stored(settings, 1)
                    assert recorder._proc is not None
                    os.kill(recorder._proc.pid, signal.SIGKILL)
                    while not recorder.failed:  # noticed at the next send
                        log.emit("step_queued", stream="s", step="a", attempt=1)
                        await anyio.sleep(0.05)
                    log.emit("run_finished", status="succeeded")  # dropped, no error
                    tg.cancel_scope.cancel()
        return recorder.failed, recorder.stored

    with capture_logs() as logs:
        failed, stored = anyio.run(main)
    assert failed and stored is None
    logged = [e for e in logs if e["event"] == "run_not_recorded"]
    assert [e["error"] for e in logged] == ["the recorder process ended early"]


def test_a_stalled_recorder_is_given_up_after_the_timeout(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis_url=None)
    plan = plan_from([stream("s", [sleep_step("a")])])

    async def main() -> bool:
        async with record_run(settings, plan, "text", tmp_path, "run-1", timeout_s=1) as recorder:
            log = EventLog("run-1", [recorder])
            async with anyio.create_task_group() as tg:
                tg.start_soon(recorder.write_forever)
                log.emit("run_started", plan="test", streams=["s"])
                await _stored(settings, 1)
                assert recorder._proc is not None
                os.kill(recorder._proc.pid, signal.SIGSTOP)
                log.emit("run_finished", status="succeeded")
                tg.cancel_scope.cancel()
        # Exiting sent the rest and waited out the timeout for the stopped recorder.
        assert recorder._proc is not None and recorder._proc.returncode is not None
        return recorder.failed

    with capture_logs() as logs:
        assert anyio.run(main)
    errors = [e["error"] for e in logs if e["event"] == "run_not_recorded"]
    assert errors == ["the recorder did not finish within 1s"]


async def _stored(settings: Settings, count: int) -> None:
    """Return once ``count`` events of run-1 are stored (the caller's deadline bounds it)."""
    for _ in range(10_000):
        async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
            known = await store.get_run("run-1") is not None
            if known and len(await store.read_events("run-1", limit=100)) >= count:
                return
        await anyio.sleep(0.01)
    raise AssertionError(f"{count} events of run-1 were never stored")


def test_the_header_goes_through_the_pipe_as_it_was_made(tmp_path: Path) -> None:
    run = RunRecord(
        run_id="run-1",
        plan="p",
        plan_source="text",
        workdir=tmp_path,
        status=RunStatus.RUNNING,
        options={"origin": IN_PROCESS_ORIGIN},
    )
    header = RecorderHeader("postgresql://u:pw@h/db", tmp_path, 2.5, run)
    assert RecorderHeader.from_json(header.to_json()) == header


def test_a_bad_header_is_one_error_reply_that_never_shows_the_password(tmp_path: Path) -> None:
    header = {"store": "postgresql://orch:hunter2-secret@127.0.0.1/orch", "state_dir": 5, "run": {}}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.store.recorder"],
        input=orjson.dumps(header) + b"\n",
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    reply = orjson.loads(done.stdout)
    assert reply == {"error": "ValueError: 'state_dir' is missing or of the wrong type"}
    assert b"hunter2-secret" not in done.stdout + done.stderr
