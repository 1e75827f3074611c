"""The run store contract, on both backends: SQLite in a temp dir, PostgreSQL on a real server.

The events come from a real scheduler run (retries, a lock timeout, a failure, skipped
steps and a skipped stream), so the derived stream and step state is checked against what
the scheduler actually emits.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.scheduler import RunStatus as SchedulerRunStatus
from orchestrator.store import (
    IN_PROCESS_ORIGIN,
    SCHEMA_VERSION,
    RunRecord,
    RunStore,
    StepRecord,
    StoreError,
    StoreUnavailable,
    open_store,
)
from tests.helpers import plan_from, run_plan, sleep_step, stream
from tests.ports import free_port
from tests.servers_postgres import PostgresServer

PLAN_SOURCE = "version: 1\nplan: test\n# the YAML as submitted\n"


# -- a real run's events (made once) --------------------------------------------------------


def _command(sid: str, script: str, agent: str = "cpu-agent", **extra: Any) -> dict[str, Any]:
    return {
        "id": sid,
        "agent": agent,
        "action": "command",
        "with": {"argv": ["sh", "-c", script]},
        **extra,
    }


@pytest.fixture(scope="module")
def run_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Events of a run that fails: one retried step, a lock timeout, a failed stream whose
    last step and dependent stream are skipped."""
    workdir = tmp_path_factory.mktemp("workdir")
    plan = plan_from(
        [
            stream(
                "build",
                [
                    _command("compile", "exit 0"),
                    _command("flaky", "test -f flag || { touch flag; exit 3; }", retries=1),
                    sleep_step("package", seconds=0.01),
                ],
            ),
            stream(
                "broken",
                [_command("boom", "echo oops; exit 7", retries=0), sleep_step("never")],
            ),
            stream("after-broken", [sleep_step("x")], depends_on=["broken"]),
            stream("holder", [sleep_step("hold", seconds=0.4, locks=["redis"])]),
            stream(
                "waiter",
                [
                    sleep_step("w0", seconds=0.05),
                    sleep_step("w", seconds=0.01, locks=["redis"], lock_timeout="100ms"),
                ],
            ),
        ],
        defaults={"backoff": "20ms", "backoff_max": "50ms"},
    )
    result, events = anyio.run(lambda: run_plan(plan, workdir=workdir))
    assert result.status is SchedulerRunStatus.FAILED
    names = {e["event"] for e in events}
    assert {"step_retrying", "step_waiting", "step_skipped"} <= names, names
    return events


def events_of(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [{**e, "run_id": run_id} for e in events]


# -- the backends ------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    state_dir: Path
    location: str | None
    schema: str
    server: PostgresServer | None = None

    def open(self, **options: Any) -> AbstractAsyncContextManager[RunStore]:
        return open_store(self.location, state_dir=self.state_dir, pg_schema=self.schema, **options)

    def force_schema_version(self, version: int) -> None:
        """Record a schema version from the future, as a newer orchestrator would."""
        sql = f"INSERT INTO schema_migrations (version, name) VALUES ({version}, 'future')"
        if self.server is None:
            with sqlite3.connect(self.state_dir / "runs.sqlite3") as conn:
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, 'future', '2099-01-01T00:00Z')",
                    (version,),
                )
        else:
            self.server.psql(f"SET search_path = {self.schema}", sql, database="orch")

    def schema_versions(self) -> list[int]:
        if self.server is None:
            with sqlite3.connect(self.state_dir / "runs.sqlite3") as conn:
                rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1")
                return [int(r[0]) for r in rows]
        out = self.server.psql(
            f"SELECT version FROM {self.schema}.schema_migrations ORDER BY 1", database="orch"
        )
        return [int(line) for line in out.split()]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    schema = "t_" + secrets.token_hex(6)
    if request.param == "sqlite":
        yield Backend("sqlite", tmp_path / "state", None, schema)
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    yield Backend("postgres", tmp_path / "state", server.dsn, schema, server)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[RunStore]:
    async with backend.open() as opened:
        yield opened


def a_run(run_id: str = "run-1", *, minutes: int = 0, **changes: Any) -> RunRecord:
    run = RunRecord(
        run_id=run_id,
        plan="test",
        plan_source=PLAN_SOURCE,
        plan_path=Path("/plans/test.yaml"),
        workdir=Path("/work/dir"),
        created_at=datetime(2026, 11, 21, 16, 0, tzinfo=UTC) + timedelta(minutes=minutes),
        options={"priority": "high", "tags": ["a", "b"], "retries": 2},
    )
    return replace(run, **changes)


# -- runs -----------------------------------------------------------------------------------


async def test_created_runs_read_back_and_list_newest_first(store: RunStore) -> None:
    for minutes, run_id in enumerate(["run-a", "run-b", "run-c"]):
        await store.create_run(a_run(run_id, minutes=minutes))
    await store.set_run_status("run-b", "succeeded")

    got = await store.get_run("run-a")
    assert got == a_run("run-a")
    assert await store.get_run("nope") is None
    assert [r.run_id for r in await store.list_runs()] == ["run-c", "run-b", "run-a"]
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["run-c", "run-b"]
    assert [r.run_id for r in await store.list_runs(statuses=["succeeded"])] == ["run-b"]
    assert [r.run_id for r in await store.list_runs(statuses=[])] == []
    succeeded = await store.get_run("run-b")
    assert succeeded is not None and succeeded.finished_at is not None


async def test_listed_runs_filter_by_plan_and_creation_time(store: RunStore) -> None:
    start = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    await store.create_run(a_run("run-a", plan="alpha"))
    await store.create_run(a_run("run-b", minutes=1, plan="beta"))
    # Recorded by ``orchestrator run`` after it started: it was created when it started.
    early = start - timedelta(minutes=10)
    await store.create_run(a_run("run-c", minutes=10, plan="alpha", started_at=early))
    await store.set_run_status("run-a", "succeeded")

    async def listed(**filters: Any) -> list[str]:
        return [r.run_id for r in await store.list_runs(**filters)]

    assert await listed(plan="alpha") == ["run-c", "run-a"]
    assert await listed(plan="alpha", limit=1) == ["run-c"]
    assert await listed(plan="gamma") == []
    assert await listed(since=start - timedelta(minutes=5)) == ["run-b", "run-a"]
    assert await listed(since=start + timedelta(minutes=1)) == ["run-b"]
    assert await listed(since=datetime(2026, 11, 21, 16, 1)) == ["run-b"]  # naive: UTC
    plus_one = timezone(timedelta(hours=1))
    assert await listed(since=datetime(2026, 11, 21, 17, 1, tzinfo=plus_one)) == ["run-b"]
    assert await listed(since=early) == ["run-c", "run-b", "run-a"]
    assert await listed(plan="alpha", since=start - timedelta(minutes=5)) == ["run-a"]
    assert await listed(plan="alpha", statuses=["succeeded"]) == ["run-a"]
    assert await listed(plan="beta", statuses=["succeeded"]) == []


async def test_creating_a_run_again_is_harmless_but_another_run_under_its_id_is_refused(
    store: RunStore,
) -> None:
    await store.create_run(a_run())
    await store.create_run(a_run())  # a retry after a lost answer
    with pytest.raises(StoreError, match="different run 'run-1' already exists"):
        await store.create_run(a_run(plan_source="other: plan\n"))


# -- events and derived state ----------------------------------------------------------------


async def test_events_of_a_real_run_derive_run_stream_and_step_state(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    events = events_of(run_events, "r")
    for start in range(0, len(events), 4):
        await store.append_events("r", events[start : start + 4])

    run = await store.get_run("r")
    assert run is not None
    assert (run.status, run.last_seq) == ("failed", events[-1]["seq"])
    assert run.started_at is not None and run.finished_at is not None
    assert run.started_at <= run.finished_at

    streams = {s.stream: s for s in await store.get_streams("r")}
    assert list(streams) == ["build", "broken", "after-broken", "holder", "waiter"]  # plan order
    assert {k: s.status for k, s in streams.items()} == {
        "build": "succeeded",
        "broken": "failed",
        "after-broken": "skipped",
        "holder": "succeeded",
        "waiter": "succeeded",
    }
    assert streams["broken"].reason == "step failed: boom (failed)"
    assert "broken (failed)" in streams["after-broken"].reason
    assert streams["after-broken"].started_at is None
    assert streams["build"].started_at is not None and streams["build"].finished_at is not None

    steps = {(s.stream, s.step): s for s in await store.get_steps("r")}
    assert [k[1] for k in steps] == ["compile", "flaky", "package", "boom", "never", "x",
                                     "hold", "w0", "w"]  # fmt: skip
    flaky = steps["build", "flaky"]
    assert (flaky.status, flaky.attempt, flaky.exit_code) == ("succeeded", 2, 0)
    assert flaky.agent == "cpu-agent" and flaky.resource_class == "cpu"
    boom = steps["broken", "boom"]
    assert (boom.status, boom.attempt, boom.exit_code) == ("failed", 1, 7)
    never = steps["broken", "never"]
    assert (never.status, never.attempt, never.started_at) == ("skipped", 0, None)
    assert never.reason.startswith("stream failed")
    assert steps["after-broken", "x"].status == "skipped"
    waited = steps["waiter", "w"]
    assert (waited.status, waited.attempt) == ("succeeded", 1)  # lock waits are not attempts
    assert waited.reason == "slept 0.01s, done"  # the lock-timeout message was replaced

    # Every step matches its last step_finished event (or its skip).
    for (sid, step_id), step in steps.items():
        finished = [
            e for e in events
            if e["event"] == "step_finished" and (e["stream"], e["step"]) == (sid, step_id)
        ]  # fmt: skip
        if not finished:
            assert step.status == "skipped"
            continue
        last = finished[-1]
        assert (step.status, step.attempt, step.reason) == (
            last["status"],
            last["attempt"],
            last["reason"],
        )
        assert step.duration_s == pytest.approx(last["duration_s"])
        assert step.finished_at == datetime.fromisoformat(last["ts"])
        assert step.started_at is not None and step.started_at <= step.finished_at


async def test_derived_state_does_not_depend_on_how_events_are_batched(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    states = []
    for size in (1, 3, len(run_events)):
        run_id = f"batch-{size}"
        await store.create_run(a_run(run_id))
        events = events_of(run_events, run_id)
        for start in range(0, len(events), size):
            await store.append_events(run_id, events[start : start + size])
        steps = [replace(s, run_id="") for s in await store.get_steps(run_id)]
        streams = [replace(s, run_id="") for s in await store.get_streams(run_id)]
        states.append((steps, streams))
    assert states[0] == states[1] == states[2]


async def test_a_step_row_tracks_its_latest_attempt(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    base = {"run_id": "r", "stream": "s", "step": "t", "agent": "a", "resource_class": "cpu"}
    times = iter(f"2026-11-21T16:00:{n:02d}.000000Z" for n in range(60))

    async def emit(seq: int, event: str, **fields: Any) -> StepRecord:
        await store.append_events("r", [{"ts": next(times), "seq": seq, "event": event,
                                         **base, **fields}])  # fmt: skip
        (step,) = await store.get_steps("r")
        return step

    step = await emit(1, "step_queued", attempt=1)
    assert (step.status, step.attempt, step.started_at) == ("queued", 1, None)
    step = await emit(2, "step_started", attempt=1)
    assert step.status == "running" and step.started_at is not None
    step = await emit(3, "step_finished", attempt=1, status="failed", duration_s=1.5,
                      reason="sh exited 3", exit_code=3)  # fmt: skip
    assert (step.status, step.exit_code, step.duration_s) == ("failed", 3, 1.5)
    step = await emit(4, "step_retrying", attempt=1, reason="failed", message="again in 1s")
    assert (step.status, step.reason, step.exit_code) == ("retrying", "again in 1s", 3)
    step = await emit(5, "step_queued", attempt=2)
    assert (step.status, step.attempt) == ("queued", 2)
    assert (step.started_at, step.finished_at, step.exit_code, step.reason) == (
        None,
        None,
        None,
        "",
    )
    step = await emit(6, "step_started", attempt=2)
    assert step.status == "running" and step.duration_s is None


async def test_replaying_events_changes_nothing(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    events = events_of(run_events, "r")
    half = len(events) // 2
    assert await store.append_events("r", events[:half]) == half
    # A crash after the commit: the writer sends an overlapping batch again.
    assert await store.append_events("r", events[half - 5 : half + 5]) == 5
    assert await store.append_events("r", events) == len(events) - half - 5
    before = (await store.get_run("r"), await store.get_streams("r"), await store.get_steps("r"))
    assert await store.append_events("r", events) == 0
    assert await store.append_events("r", list(reversed(events[:10]))) == 0
    after = (await store.get_run("r"), await store.get_streams("r"), await store.get_steps("r"))
    assert before == after
    assert len(await store.read_events("r", limit=10_000)) == len(events)


async def test_a_cancelled_append_is_all_or_nothing_and_the_store_stays_usable(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    for n, delay_s in enumerate((0.0, 0.0005, 0.002, 0.01, 0.05)):
        run_id = f"c{n}"
        await store.create_run(a_run(run_id))
        events = events_of(run_events, run_id)
        with anyio.move_on_after(delay_s):  # cancelled before, during or after its statement
            await store.append_events(run_id, events)
        stored = len(await store.read_events(run_id, limit=10_000))
        assert stored in (0, len(events))
        assert await store.append_events(run_id, events) == len(events) - stored
        run = await store.get_run(run_id)
        assert run is not None and run.status == "failed"


async def test_read_events_pages_in_seq_order_and_returns_them_as_emitted(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    events = events_of(run_events, "r")
    await store.append_events("r", list(reversed(events)))  # order within a batch is free

    pages: list[list[dict[str, Any]]] = []
    after = 0
    while page := await store.read_events("r", after_seq=after, limit=7):
        pages.append(page)
        after = page[-1]["seq"]
    assert all(len(p) == 7 for p in pages[:-1])
    read = [e for page in pages for e in page]
    assert read == events
    assert list(read[0])[:4] == ["ts", "seq", "event", "run_id"]
    assert await store.read_events("r", after_seq=events[-1]["seq"]) == []
    assert await store.read_events("other") == []


async def test_text_with_nul_characters_is_stored(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    event = {"ts": "2026-11-21T16:00:00.000000Z", "seq": 1, "event": "step_finished",
             "stream": "s", "step": "t", "attempt": 1, "status": "failed",
             "reason": "bad\x00byte", "output_tail": "a\x00b \\u0000 c\\\x00"}  # fmt: skip
    assert await store.append_events("r", [event]) == 1
    (step,) = await store.get_steps("r")
    assert step.reason.startswith("bad") and step.reason.endswith("byte")
    (read,) = await store.read_events("r")
    assert read["output_tail"].replace("\ufffd", "\x00") == event["output_tail"]


async def test_bad_appends_are_refused_clearly(store: RunStore) -> None:
    event = {"ts": "2026-11-21T16:00:00.000000Z", "seq": 1, "event": "run_started"}
    with pytest.raises(StoreError, match="no run 'ghost'"):
        await store.append_events("ghost", [event])
    await store.create_run(a_run("r"))
    for bad, problem in [
        ({**event, "seq": "1"}, "'seq' must be a positive integer"),
        ({**event, "ts": "yesterday"}, "'ts' must be an ISO-8601 time"),
        ({**event, "event": None}, "'event' must be a non-empty string"),
        ({**event, "run_id": "other"}, "belongs to run 'other'"),
        ({**event, "event": "run_finished", "status": "odd"}, "run_finished needs a status"),
    ]:
        with pytest.raises(StoreError, match=problem):
            await store.append_events("r", [event | {"seq": 2}, bad])
    assert await store.read_events("r") == []
    assert await store.append_events("r", []) == 0


# -- run status and restart ----------------------------------------------------------------------


async def test_unfinished_runs_are_queued_or_running_oldest_first(store: RunStore) -> None:
    for minutes, run_id in enumerate(["old", "mid", "new", "done"]):
        await store.create_run(a_run(run_id, minutes=minutes))
    # Recorded by ``orchestrator run``, whose process runs it: never a daemon's to resume.
    await store.create_run(a_run("theirs", minutes=1, options={"origin": IN_PROCESS_ORIGIN}))
    started = {"ts": "2026-11-21T16:05:00.000000Z", "seq": 1, "event": "run_started"}
    await store.append_events("mid", [started | {"streams": ["s"]}])
    await store.set_run_status("done", "succeeded")
    assert [(r.run_id, r.status) for r in await store.unfinished_runs()] == [
        ("old", "queued"),
        ("mid", "running"),
        ("new", "queued"),
    ]
    mid = await store.get_run("mid")
    assert mid is not None and mid.started_at == datetime(2026, 11, 21, 16, 5, tzinfo=UTC)
    assert [s.status for s in await store.get_streams("mid")] == ["pending"]

    # What a restarted daemon does: mark what it will not resume, only if still running.
    assert await store.set_run_status(
        "mid", "interrupted", reason="daemon restarted", expect=["running"]
    )
    assert not await store.set_run_status("mid", "cancelled", expect=["running"])
    mid = await store.get_run("mid")
    assert mid is not None
    assert (mid.status, mid.reason) == ("interrupted", "daemon restarted")
    assert mid.finished_at is not None
    assert [r.run_id for r in await store.unfinished_runs()] == ["old", "new"]
    with pytest.raises(StoreError, match="no run 'ghost'"):
        await store.set_run_status("ghost", "running")


async def test_a_resumed_run_continues_after_its_last_seq(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    ts = "2026-11-21T16:00:00.000000Z"
    await store.append_events("r", [{"ts": ts, "seq": 1, "event": "run_started"}])
    await store.set_run_status("r", "interrupted", expect=["running"])
    run = await store.get_run("r")
    assert run is not None and run.last_seq == 1
    await store.append_events("r", [{"ts": ts, "seq": run.last_seq + 1, "event": "run_started"}])
    run = await store.get_run("r")
    assert run is not None and (run.status, run.finished_at, run.reason) == ("running", None, "")


async def test_lock_fences_keep_the_highest_token_any_step_started_with(store: RunStore) -> None:
    await store.create_run(a_run("r"))
    ts = "2026-11-21T16:00:00.000000Z"

    def started(seq: int, fences: Any) -> dict[str, Any]:
        return {
            "ts": ts,
            "seq": seq,
            "event": "step_started",
            "stream": "s",
            "step": f"t{seq}",
            "fences": fences,
        }

    assert await store.lock_fences() == {}
    await store.append_events("r", [started(1, {"db": 3}), started(2, {"db": 7, "redis": 1})])
    await store.append_events("r", [started(3, {"db": 5}), started(4, {"redis": 2, "x": "9"})])
    await store.append_events("r", [started(1, {"db": 3})])  # a replay lowers nothing
    assert await store.lock_fences() == {"db": 7, "redis": 2}  # a non-integer token is ignored


# -- schema migrations -----------------------------------------------------------------------------


async def test_migrations_apply_once_and_a_newer_schema_is_refused(backend: Backend) -> None:
    async with backend.open() as store:
        await store.create_run(a_run("kept"))
    assert backend.schema_versions() == list(range(1, SCHEMA_VERSION + 1))
    async with backend.open() as store:  # reopen at the same version: nothing to do
        assert await store.get_run("kept") is not None
    assert backend.schema_versions() == list(range(1, SCHEMA_VERSION + 1))

    backend.force_schema_version(SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as caught:
        async with backend.open():
            pass
    message = str(caught.value)
    assert f"schema is version {SCHEMA_VERSION + 1}, newer than this orchestrator knows" in message
    assert "upgrade the orchestrator" in message


# -- PostgreSQL: credentials and restarts -------------------------------------------------------


async def test_a_wrong_password_is_a_clear_error_without_the_password(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    wrong = "Wr0ng-" + secrets.token_hex(8)
    for dsn in (
        postgres_server.dsn_with(wrong),
        f"postgresql://orch@127.0.0.1:{postgres_server.port}/orch?password={wrong}",
    ):
        with pytest.raises(StoreError) as caught:
            async with open_store(dsn, state_dir=tmp_path):
                pass
        error = caught.value
        assert not isinstance(error, StoreUnavailable)
        assert "password authentication failed" in str(error)
        assert "check the user and password" in str(error)
        assert wrong not in str(error) and wrong not in repr(error.args)
        assert "***" in error.where and f":{postgres_server.port}/orch" in error.where


async def test_an_unreachable_server_is_unavailable_quickly(tmp_path: Path) -> None:
    dsn = f"postgresql://orch:Secret-123@127.0.0.1:{free_port()}/orch"
    with anyio.fail_after(5), pytest.raises(StoreUnavailable) as caught:
        async with open_store(dsn, state_dir=tmp_path, timeout_s=2):
            pass
    assert "cannot reach the server" in str(caught.value)
    assert "Secret-123" not in str(caught.value)


async def test_the_store_survives_a_postgres_restart(
    fresh_postgres: PostgresServer, tmp_path: Path
) -> None:
    async with open_store(fresh_postgres.dsn, state_dir=tmp_path, timeout_s=5) as store:
        await store.create_run(a_run("r"))

        fresh_postgres.restart(kill=True)  # connections in the pool are now dead
        assert await store.get_run("r") is not None  # reconnects within the call

        fresh_postgres.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await store.list_runs()
        assert fresh_postgres.password not in str(caught.value)
        assert "the next call connects again" in str(caught.value)

        fresh_postgres.start()
        ts = "2026-11-21T16:00:00.000000Z"
        assert await store.append_events("r", [{"ts": ts, "seq": 1, "event": "run_started"}])
        run = await store.get_run("r")
        assert run is not None and run.status == "running"


# -- SQLite: deadlines --------------------------------------------------------------------------


async def test_sqlite_gives_up_on_a_lock_held_elsewhere_at_its_deadline(tmp_path: Path) -> None:
    async with open_store(None, state_dir=tmp_path, timeout_s=0.5) as store:
        await store.create_run(a_run("r"))
        other = sqlite3.connect(tmp_path / "runs.sqlite3", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            with anyio.fail_after(5), pytest.raises(StoreUnavailable, match="locked"):
                await store.set_run_status("r", "running")
            assert await store.get_run("r") is not None  # WAL: readers are not blocked
        finally:
            other.close()
        assert await store.set_run_status("r", "running")
