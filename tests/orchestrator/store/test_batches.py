"""Large batches in the SQLite store, as a 10,000-step ``orchestrator run`` writes them:
thousands of events and step patches per append, written many rows a statement (199 events
or 71 step patches) and the rest by powers of two."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.store import RunRecord, RunStatus
from orchestrator.store._sqlite_sql import INSERT_EVENTS, UPSERT_STEPS
from orchestrator.store.sqlite import SqliteStore

STEPS = 2_500  # 7,502 events, 2,500 step patches: both ways of writing rows, twice


def _events(run_id: str) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    events: list[dict[str, Any]] = []

    def add(event: str, **fields: Any) -> None:
        ts = start + timedelta(milliseconds=len(events))
        events.append({"ts": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "seq": len(events) + 1,
                       "event": event, "run_id": run_id, **fields})  # fmt: skip

    add("run_started", plan="p", streams=["s"])
    add("stream_started", stream="s", signature="sig", methodology="m")
    for n in range(STEPS):
        step = {"stream": "s", "step": f"t{n}", "attempt": 1, "agent": "a"}
        add("step_queued", **step)
        add("step_started", **step)
        reason = "bad\x00byte" if n == 1_700 else f"done ü {n}"  # one NUL, far into the batch
        add("step_finished", **step, status="succeeded", duration_s=n / 7, reason=reason,
            exit_code=0)  # fmt: skip
    return events


async def test_thousands_of_events_and_steps_go_in_whole_once(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "runs.sqlite3")
    try:
        await store.create_run(
            RunRecord(
                run_id="r", plan="p", plan_source="", workdir=tmp_path, status=RunStatus.RUNNING
            )
        )
        events = _events("r")
        half = len(events) // 2
        assert await store.append_events("r", events[:half]) == half
        # A replay overlapping what is stored: only the rest is new.
        assert await store.append_events("r", events) == len(events) - half
        assert await store.append_events("r", events) == 0
        read = await store.read_events("r", limit=100_000)
        steps = await store.get_steps("r")
        run = await store.get_run("r")
    finally:
        await store.aclose()
    assert read == events  # every event once, in order, its text as emitted (ü included)
    assert [s.step for s in steps] == [f"t{n}" for n in range(STEPS)]
    assert {s.status for s in steps} == {"succeeded"}
    assert [s.duration_s for s in steps] == [n / 7 for n in range(STEPS)]  # floats exact
    assert steps[1_700].reason == "bad\x00byte"
    assert steps[1_699].reason == "done ü 1699"
    assert all(s.started_at is not None and s.exit_code == 0 for s in steps)
    assert run is not None and run.last_seq == len(events)


@given(st.integers(min_value=0, max_value=5_000))
def test_a_batch_of_any_size_is_a_few_statements(total: int) -> None:
    for rows in (INSERT_EVENTS, UPSERT_STEPS):
        counts = rows.counts(total)
        assert sum(counts) == total
        assert all(1 <= n <= rows.per for n in counts)
        # Full statements, then the rest as distinct powers of two: one each per set bit.
        full, rest = divmod(total, rows.per)
        assert len(counts) == full + rest.bit_count()
        for n in set(counts):  # each statement has the parameters of its rows
            assert rows.statement(n).count("?") == n * rows.row.count("?")


def test_an_event_time_is_stored_as_written_or_from_its_stamp_when_redacted() -> None:
    from orchestrator.events import EventRecord
    from orchestrator.store._derive import parse_events

    second, micros = 1_796_084_000, 42  # 2026-12-01T00:13:20Z
    written = EventRecord(
        {"ts": "2026-12-01T00:13:20.000042Z", "seq": 1, "event": "e", "run_id": "r"},
        (second, micros),
    )
    # A secret that happened to be part of a time: ts no longer parses, the stamp holds.
    redacted = EventRecord(
        {"ts": "2026-12-01T***:20.000043Z", "seq": 2, "event": "e", "run_id": "r"},
        (second, micros + 1),
    )
    # A 3-character secret masked inside the microseconds: ts keeps its length and shape.
    masked = EventRecord(
        {"ts": "2026-12-01T00:13:20.000***Z", "seq": 3, "event": "e", "run_id": "r"},
        (second, micros + 2),
    )
    offset = {"ts": "2026-12-01T01:13:20.000045+01:00", "seq": 4, "event": "e", "run_id": "r"}
    week = {"ts": "2026-W49-2T00:13:20.000046Z", "seq": 5, "event": "e", "run_id": "r"}
    parsed = parse_events("here", "r", [written, redacted, masked, offset, week])
    assert [p.ts_text for p in parsed] == [
        f"2026-12-01T00:13:20.0000{m}Z" for m in (42, 43, 44, 45, 46)
    ]
    assert [p.ts for p in parsed] == [
        datetime(2026, 12, 1, 0, 13, 20, m, tzinfo=UTC) for m in (42, 43, 44, 45, 46)
    ]
