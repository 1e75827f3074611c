"""Stream history in the run store, on both backends, from the events of real scheduler runs.

A run whose streams succeed (one through a gate), fail, are skipped and are cancelled: only
the verdicts on a stream's own work (succeeded, failed) become history, keyed by the
stream's signature, with the duration between its ``stream_started`` and ``stream_finished``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunStatus, Scheduler
from orchestrator.store import SCHEMA_VERSION, HistoryRecord, RunStore
from orchestrator.store._derive import iso
from streams.model import Plan
from tests.helpers import on_virtual_clock, plan_from, sleep_step, stream
from tests.orchestrator.store import test_store as contract
from tests.orchestrator.store.test_store import Backend, a_run, events_of

# The store contract's fixtures: SQLite in a temp dir, PostgreSQL on a real server.
backend = contract.backend
store = contract.store

PLAN = plan_from(
    [
        stream(
            "gated",
            [sleep_step("work", seconds=2.0), sleep_step("check", seconds=1.0)],
            methodology="Patch",
            gate={"threshold": 0.5, "criteria": ["slept_s >= 0", "slept_s > 100"]},
        ),
        stream("plain", [sleep_step("only", seconds=3.0)], methodology="incremental"),
        stream(
            "broken",
            [
                {
                    "id": "boom",
                    "agent": "light-agent",
                    "action": "sleep",
                    "with": {"seconds": 1.0, "fail": True},
                }
            ],
        ),
        stream("after-broken", [sleep_step("never")], depends_on=["broken"]),
        stream("endless", [sleep_step("forever", seconds=3600.0)]),
    ]
)


async def _run_cancelled_at(plan: Plan, cancel_after_s: float) -> list[dict[str, Any]]:
    """Run ``plan`` on the virtual clock, cancelling it after ``cancel_after_s``."""
    sink = MemorySink()
    scheduler = Scheduler(
        plan,
        run_id="run-test",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("run-test", [sink]),
    )
    with anyio.move_on_after(cancel_after_s):
        await scheduler.run()
    return sink.events


@pytest.fixture(scope="module")
def run_events() -> list[dict[str, Any]]:
    events = on_virtual_clock(_run_cancelled_at, PLAN, 60.0)
    ends = {e["stream"]: e["status"] for e in events if e["event"] == "stream_finished"}
    assert ends == {
        "gated": "succeeded",
        "plain": "succeeded",
        "broken": "failed",
        "after-broken": "skipped",
        "endless": "cancelled",
    }
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == RunStatus.CANCELLED.value
    return events


def _expected(events: list[dict[str, Any]], run_id: str, plan: str) -> list[HistoryRecord]:
    """History as the events say it should be: started..finished of each verdict."""
    started = {e["stream"]: e for e in events if e["event"] == "stream_started"}
    found = []
    for end in events:
        if end["event"] != "stream_finished" or end["status"] not in ("succeeded", "failed"):
            continue
        start = started[end["stream"]]
        finished_at = datetime.fromisoformat(end["ts"])
        found.append(
            HistoryRecord(
                signature=start["signature"],
                run_id=run_id,
                stream=end["stream"],
                plan=plan,
                methodology=start["methodology"],
                status=end["status"],
                duration_s=(finished_at - datetime.fromisoformat(start["ts"])).total_seconds(),
                gate_confidence=(end.get("gate") or {}).get("confidence"),
                finished_at=finished_at,
                service_s=end.get("service_s"),
                queued_s=end.get("queued_s"),
            )
        )
    return found


def later(events: list[dict[str, Any]], run_id: str, hours: int) -> list[dict[str, Any]]:
    """The run's events as ``run_id``'s, ``hours`` later: another run of the same plan."""
    shift = timedelta(hours=hours)
    return [
        {**e, "ts": iso(datetime.fromisoformat(e["ts"]) + shift)} for e in events_of(events, run_id)
    ]


def _signatures() -> dict[str, str]:
    return {s.id: s.signature() for s in PLAN.streams}


async def _history(store: RunStore, **options: Any) -> list[HistoryRecord]:
    found = await store.stream_history(list(_signatures().values()), **options)
    return sorted((r for rows in found.values() for r in rows), key=lambda r: r.stream)


@pytest.mark.parametrize("batch", [1, 3, 10_000], ids=["one-by-one", "by-three", "whole-run"])
async def test_verdicts_of_a_real_run_become_history_however_events_are_batched(
    store: RunStore, run_events: list[dict[str, Any]], batch: int
) -> None:
    await store.create_run(a_run("r"))
    events = events_of(run_events, "r")
    for start in range(0, len(events), batch):
        await store.append_events("r", events[start : start + batch])

    history = await _history(store)
    assert history == sorted(_expected(events, "r", "test"), key=lambda r: r.stream)
    by_stream = {r.stream: r for r in history}
    # Skipped (never ran) and cancelled (stopped from outside) streams are not history.
    assert sorted(by_stream) == ["broken", "gated", "plain"]
    gated = by_stream["gated"]
    assert (gated.status, gated.gate_confidence, gated.methodology) == ("succeeded", 0.5, "Patch")
    assert gated.signature == PLAN.streams[0].signature()
    assert by_stream["plain"].gate_confidence is None
    assert by_stream["broken"].status == "failed"
    assert all(r.duration_s is not None and r.duration_s >= 0 for r in history)


async def test_history_accumulates_across_runs_and_plans_by_signature(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    for n, (run_id, plan) in enumerate([("z", "test"), ("y", "other-plan"), ("x", "test")]):
        await store.create_run(a_run(run_id, minutes=n, plan=plan))
        await store.append_events(run_id, later(run_events, run_id, hours=n))

    signature = _signatures()["plain"]
    found = await store.stream_history([signature, signature, "no-such-signature"])
    assert set(found) == {signature, "no-such-signature"}
    assert found["no-such-signature"] == []
    plain = found[signature]
    assert [(r.run_id, r.plan) for r in plain] == [
        ("z", "test"),
        ("y", "other-plan"),
        ("x", "test"),
    ]
    assert [r.finished_at for r in plain] == sorted(r.finished_at for r in plain)

    latest = await store.stream_history([signature], limit=2)
    assert [r.run_id for r in latest[signature]] == ["y", "x"]  # the latest two, oldest first
    assert await store.stream_history([]) == {}


async def test_replayed_events_add_no_history_twice(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    events = events_of(run_events, "r")
    await store.append_events("r", events)
    before = await _history(store)
    assert await store.append_events("r", events) == 0
    assert await store.append_events("r", events[-6:]) == 0
    assert await _history(store) == before
    assert len(before) == 3


async def test_a_verdict_without_a_signature_is_not_history(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    ts = iter(f"2026-11-21T16:00:{n:02d}.000000Z" for n in range(60))
    await store.append_events(
        "r",
        [
            {"ts": next(ts), "seq": 1, "event": "stream_started", "stream": "old"},
            {
                "ts": next(ts),
                "seq": 2,
                "event": "stream_finished",
                "stream": "old",
                "status": "succeeded",
            },
            {
                "ts": next(ts),
                "seq": 3,
                "event": "stream_finished",
                "stream": "never-started",
                "status": "failed",
            },
        ],
    )
    streams = {s.stream: s.status for s in await store.get_streams("r")}
    assert streams == {"old": "succeeded", "never-started": "failed"}
    assert await store.stream_history(["", "old"]) == {"": [], "old": []}


_DOWNGRADE_TO_VERSION_2 = [
    "ALTER TABLE stream_history DROP COLUMN service_s",
    "ALTER TABLE stream_history DROP COLUMN queued_s",
    "DROP TABLE lock_fences",
    "DELETE FROM schema_migrations WHERE version >= 3",
]


def _run_sql(backend: Backend, statements: list[str]) -> None:
    if backend.server is None:
        with sqlite3.connect(backend.state_dir / "runs.sqlite3") as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        backend.server.psql(f"SET search_path = {backend.schema}", *statements, database="orch")


async def test_upgrading_a_store_backfills_lock_fences_from_stored_events(
    backend: Backend,
) -> None:
    ts = "2026-11-21T16:00:00.000000Z"
    fences = [{"db": 4}, {"db": 9, "redis": 2}, {"db": 5}, {"redis": "x"}, {}]
    events = [
        {"ts": ts, "seq": n, "event": "step_started", "stream": "s", "step": "t", "fences": f}
        for n, f in enumerate(fences, 1)
    ]
    async with backend.open() as before:
        await before.create_run(a_run("old-run"))
        await before.append_events("old-run", events)
    _run_sql(backend, _DOWNGRADE_TO_VERSION_2)
    assert backend.schema_versions() == [1, 2]
    async with backend.open() as upgraded:
        assert backend.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
        assert await upgraded.lock_fences() == {"db": 9, "redis": 2}


def _downgrade_to_version_1(backend: Backend) -> None:
    """Make the store what the orchestrator wrote before history existed: schema version 1,
    with the runs and events it recorded (and no history)."""
    statements = [
        *_DOWNGRADE_TO_VERSION_2,
        "DROP TABLE stream_history",
        "ALTER TABLE streams DROP COLUMN signature",
        "ALTER TABLE streams DROP COLUMN methodology",
        "DELETE FROM schema_migrations WHERE version >= 2",
    ]
    if backend.server is None:
        with sqlite3.connect(backend.state_dir / "runs.sqlite3") as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        backend.server.psql(f"SET search_path = {backend.schema}", *statements, database="orch")


async def test_upgrading_a_store_backfills_history_from_stored_events(
    backend: Backend, run_events: list[dict[str, Any]]
) -> None:
    async with backend.open() as before:
        await before.create_run(a_run("old-run"))
        await before.append_events("old-run", events_of(run_events, "old-run"))
    _downgrade_to_version_1(backend)
    assert backend.schema_versions() == [1]

    async with backend.open() as upgraded:
        assert backend.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
        history = await _history(upgraded)
        expected = _expected(events_of(run_events, "old-run"), "old-run", "test")
        assert history == sorted(expected, key=lambda r: r.stream)
        # Runs recorded after the upgrade add to it.
        await upgraded.create_run(a_run("new-run", minutes=1))
        await upgraded.append_events("new-run", later(run_events, "new-run", hours=1))
        broken = _signatures()["broken"]
        found = await upgraded.stream_history([broken])
        assert [r.run_id for r in found[broken]] == ["old-run", "new-run"]


async def test_history_keeps_service_and_queueing_time_apart(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    await store.append_events("r", events_of(run_events, "r"))
    rows = {r.stream: r for r in await _history(store)}
    # "plain" sleeps 3 s; "gated" sleeps 2 s then 1 s (a chain): their service times, on
    # the virtual clock, whatever they waited for the light class.
    assert rows["plain"].service_s == pytest.approx(3.0)
    assert rows["gated"].service_s == pytest.approx(3.0)
    for row in (rows["plain"], rows["gated"]):
        assert row.queued_s is not None and row.queued_s >= 0
    # A stream none of whose steps succeeded has no service time of its own work.
    assert rows["broken"].service_s is None


async def test_a_stream_failed_by_a_daemon_stop_is_not_history(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    ts = iter(f"2026-11-21T16:00:{n:02d}.000000Z" for n in range(60))
    started = {"event": "stream_started", "signature": "sig", "methodology": None}
    await store.append_events(
        "r",
        [
            {"ts": next(ts), "seq": 1, "stream": "crashed", **started},
            {"ts": next(ts), "seq": 2, "stream": "ok", **started},
            {
                "ts": next(ts),
                "seq": 3,
                "event": "stream_finished",
                "stream": "crashed",
                "status": "failed",
                "steps": {"a": "succeeded", "b": "interrupted"},
            },
            {
                "ts": next(ts),
                "seq": 4,
                "event": "stream_finished",
                "stream": "ok",
                "status": "failed",
                "steps": {"a": "failed"},
            },
        ],
    )
    (row,) = (await store.stream_history(["sig"]))["sig"]
    assert (row.stream, row.status) == ("ok", "failed")
