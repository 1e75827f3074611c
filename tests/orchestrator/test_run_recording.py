"""An in-process run's events: built once, written to the file per loop tick, and stored in
batches while the run goes on, in a store a daemon never resumes them from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from orchestrator.events import EventLog, EventRecord, JsonlSink, MemorySink, read_events
from orchestrator.runs import IN_PROCESS_ORIGIN, record_run
from orchestrator.settings import Settings
from orchestrator.store import RunRecord, RunStatus, RunStore, open_store
from orchestrator.store._derive import parse_ts
from tests.helpers import plan_from, sleep_step, stream


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


def test_a_full_batch_is_written_without_waiting_out_the_interval(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, redis_url=None)
    plan = plan_from([stream("s", [sleep_step("a")])])

    async def main() -> list[int]:
        async with record_run(settings, plan, "text", tmp_path, "run-1") as recorder:
            recorder.BATCH_INTERVAL_S = 3600.0  # only a full batch can end the wait
            recorder.BATCH_MAX_EVENTS = 10
            assert recorder.store is not None
            log = EventLog("run-1", [recorder])
            with anyio.fail_after(30):  # not the interval's hour
                async with anyio.create_task_group() as tg:
                    tg.start_soon(recorder.write_forever)
                    log.emit("run_started", plan="test", streams=["s"])
                    await _stored(recorder.store, 1)  # the first batch
                    for n in range(25):
                        log.emit("step_queued", stream="s", step=f"t{n}", attempt=1)
                    await _stored(recorder.store, 26)
                    stored = [
                        e["seq"] for e in await recorder.store.read_events("run-1", limit=100)
                    ]
                    tg.cancel_scope.cancel()
        return stored

    assert anyio.run(main) == list(range(1, 27))


async def _stored(store: RunStore, count: int) -> None:
    """Return once ``count`` events of run-1 are stored (the caller's deadline bounds it)."""
    for _ in range(10_000):
        if len(await store.read_events("run-1", limit=100)) >= count:
            return
        await anyio.sleep(0.01)
