"""Run store benchmarks: the write cost of one step transition, per backend.

The events are a real scheduler run's (4 streams of no-op steps under caps 2/3/2/unlimited,
so ``step_queued``, ``step_waiting``, ``step_started``, ``step_finished``, stream and run
events). Each contender appends them to a fresh run the way a daemon would: one event
per call (``batch 1``), four per call (``batch 4``, about one step's whole life), or 500 per
call (``batch 500``, as ``orchestrator run`` and a busy daemon write them). Every call is
timed alone; figures are microseconds per call (per transition) and per event.
Contenders take turns run by run, so drift in the machine's load (and its disk's fsync
latency, which varies a lot on a shared VM) falls on all of them alike.

Backends, each against its floor (the same events inserted with no derived state):

- ``sqlite``            the default store: WAL, ``synchronous=NORMAL`` for progress, FULL
                        for run_started/run_finished (about 2 calls per run).
- ``sqlite-fsync-all``  the same with FULL on every commit (``fsync_every_commit``).
- ``postgres``          asyncpg against a PostgreSQL started here (tests' helper) with its
                        defaults for durability: ``fsync=on``, ``synchronous_commit=on``;
                        or ``--pg-dsn`` for a server of your own.

Usage::

    .venv/bin/python benchmarks/store.py            # ~1 minute
    .venv/bin/python benchmarks/store.py --quick    # a few seconds

Prints a table and writes JSON to ``benchmarks/results/store.json`` (``--quick``:
``store-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import orjson

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import Scheduler, SchedulerConfig
from orchestrator.store import RunRecord, RunStore
from orchestrator.store._open import open_store
from orchestrator.store.sqlite import SqliteStore
from streams.model import Plan

RESULTS = Path(__file__).resolve().parent / "results"
BATCHES = (1, 4, 500)


# -- the events ----------------------------------------------------------------------------------


def plan_of(steps_per_stream: int) -> Plan:
    classes = {"cpu": 2, "io": 3, "network": 2, "light": None}
    agents = {f"{c}-agent": {"class": c, "can": ["sleep"]} for c in classes}
    streams = [
        {
            "id": f"s{s}",
            "team": sorted(agents),
            "steps": [
                {
                    "id": f"t{i}",
                    "agent": f"{list(classes)[(s + i) % 4]}-agent",
                    "action": "sleep",
                    "with": {"seconds": 0},
                    "needs": [],
                }
                for i in range(steps_per_stream)
            ],
        }
        for s in range(4)
    ]
    return Plan.model_validate(
        {
            "version": 1,
            "plan": "store-bench",
            "caps": classes,
            "agents": agents,
            "streams": streams,
        }
    )


async def real_events(steps_per_stream: int) -> list[dict[str, Any]]:
    sink = MemorySink()
    scheduler = Scheduler(
        plan_of(steps_per_stream),
        run_id="bench",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("bench", [sink]),
        config=SchedulerConfig(seed=1),
    )
    await scheduler.run()
    return sink.events


# -- measuring -----------------------------------------------------------------------------------


Create = Callable[[str], Awaitable[None]]
Append = Callable[[str, Sequence[dict[str, Any]]], Awaitable[Any]]
Contender = tuple[Create, Append]


async def time_run(contender: Contender, events: list[dict[str, Any]], batch: int) -> list[float]:
    """Microseconds per append call, for one fresh run of ``events`` in ``batch``-sized calls."""
    create, append = contender
    run_id = "bench-" + secrets.token_hex(6)
    await create(run_id)
    mine = [{**e, "run_id": run_id} for e in events]
    samples: list[float] = []
    for start in range(0, len(mine), batch):
        chunk = mine[start : start + batch]
        began = time.perf_counter_ns()
        await append(run_id, chunk)
        samples.append((time.perf_counter_ns() - began) / 1000)
    return samples


def summary(samples: list[float], batch: int) -> dict[str, Any]:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    return {
        "calls": len(ordered),
        "median_us": round(median, 1),
        "p90_us": round(ordered[int(len(ordered) * 0.90)], 1),
        "p99_us": round(ordered[int(len(ordered) * 0.99)], 1),
        "max_us": round(ordered[-1], 1),
        "median_us_per_event": round(median / batch, 1),
    }


def run_record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, plan="store-bench", plan_source="{}", workdir=Path("/"))


def store_contender(store: RunStore) -> Contender:
    async def create(run_id: str) -> None:
        await store.create_run(run_record(run_id))

    return create, store.append_events


async def no_create(run_id: str) -> None:
    pass


# -- floors: the same events inserted alone, no derived state -----------------------------------


@asynccontextmanager
async def sqlite_floor(path: Path) -> AsyncIterator[Contender]:
    """One INSERT per event and a NORMAL commit per call, in a worker thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (run_id TEXT, seq INTEGER, ts TEXT, event TEXT, "
                 "body TEXT, PRIMARY KEY (run_id, seq))")  # fmt: skip
    limiter = anyio.CapacityLimiter(1)

    def insert(run_id: str, chunk: Sequence[dict[str, Any]]) -> None:
        rows = [(run_id, e["seq"], e["ts"], e["event"], orjson.dumps(e).decode()) for e in chunk]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    async def append(run_id: str, chunk: Sequence[dict[str, Any]]) -> None:
        await anyio.to_thread.run_sync(insert, run_id, chunk, limiter=limiter)

    try:
        yield no_create, append
    finally:
        conn.close()


@asynccontextmanager
async def postgres_floor(dsn: str) -> AsyncIterator[Contender]:
    """One INSERT statement (unnest) per call, autocommit."""
    import asyncpg

    schema = "floor_" + secrets.token_hex(4)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, command_timeout=10)
    await pool.execute(f"CREATE SCHEMA {schema}")
    await pool.execute(
        f"CREATE TABLE {schema}.events (run_id TEXT, seq BIGINT, ts TIMESTAMPTZ, "
        "event TEXT, body JSONB, PRIMARY KEY (run_id, seq))"
    )
    sql = (
        f"INSERT INTO {schema}.events SELECT $1, * FROM unnest($2::bigint[], "
        "$3::timestamptz[], $4::text[], $5::jsonb[])"
    )

    async def append(run_id: str, chunk: Sequence[dict[str, Any]]) -> None:
        with anyio.fail_after(10):
            await pool.execute(
                sql,
                run_id,
                [e["seq"] for e in chunk],
                [datetime.fromisoformat(e["ts"]) for e in chunk],
                [e["event"] for e in chunk],
                [orjson.dumps(e).decode() for e in chunk],
            )

    try:
        yield no_create, append
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


# -- the servers ---------------------------------------------------------------------------------


@asynccontextmanager
async def postgres_dsn(given: str | None) -> AsyncIterator[tuple[str, str]]:
    """A DSN and how the server was set up: ``given``, or a fresh server with fsync on."""
    if given:
        yield given, "given by --pg-dsn"
        return
    from tests.servers_postgres import PostgresServer, PostgresTemplate

    template = PostgresTemplate()
    server = PostgresServer(template, fsync=True)
    try:
        server.start()
        version = server.psql("SHOW server_version").strip()
        yield server.dsn, f"PostgreSQL {version}, local, fsync=on, synchronous_commit=on"
    finally:
        server.remove()
        template.remove()


# -- main ------------------------------------------------------------------------------------------


def meta(args: argparse.Namespace, pg_setup: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "versions": {p: metadata.version(p) for p in ("anyio", "asyncpg", "orjson")},
        "command": "python benchmarks/store.py" + (" --quick" if args.quick else ""),
        "postgres": pg_setup,
        "events_per_run": len(events),
        "events": {
            name: sum(e["event"] == name for e in events)
            for name in sorted({e["event"] for e in events})
        },
        "runs_per_figure": args.runs,
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "disk": "the temp dir's file system (" + tempfile.gettempdir() + ")",
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    events = await real_events(args.steps)
    with tempfile.TemporaryDirectory(prefix="orch-store-bench-") as tmp:
        state = Path(tmp)
        async with (
            postgres_dsn(args.pg_dsn) as (dsn, setup),
            open_store(state / "default.sqlite3", state_dir=state) as sqlite_store,
            open_store(dsn, state_dir=state, pg_schema="bench_" + secrets.token_hex(4)) as pg,
            sqlite_floor(state / "floor.sqlite3") as sqlite_floor_contender,
            postgres_floor(dsn) as postgres_floor_contender,
        ):
            full = await SqliteStore.open(state / "full.sqlite3", fsync_every_commit=True)
            contenders = {
                "sqlite": store_contender(sqlite_store),
                "sqlite-fsync-all": store_contender(full),
                "sqlite-floor": sqlite_floor_contender,
                "postgres": store_contender(pg),
                "postgres-floor": postgres_floor_contender,
            }
            try:
                for contender in contenders.values():  # warm-up: caches, prepared statements
                    await time_run(contender, events[:40], 1)
                samples: dict[str, dict[int, list[float]]] = {
                    name: {b: [] for b in BATCHES} for name in contenders
                }
                # Interleaved, run by run, so that drift in the machine's load is shared.
                for batch in BATCHES:
                    for _ in range(args.runs):
                        for name, contender in contenders.items():
                            samples[name][batch] += await time_run(contender, events, batch)
            finally:
                await full.aclose()
    results = {
        name: {f"batch_{b}": summary(by_batch[b], b) for b in BATCHES}
        for name, by_batch in samples.items()
    }
    return {"meta": meta(args, setup, events), **results}


def render(report: dict[str, Any]) -> str:
    lines = [
        f"{'backend':<18} {'batch':>5} {'calls':>6} {'median us':>10} {'p90':>9} {'p99':>9} "
        f"{'max':>9} {'us/event':>9}"
    ]
    for name, figures in report.items():
        if name == "meta":
            continue
        for batch in BATCHES:
            f = figures[f"batch_{batch}"]
            lines.append(
                f"{name:<18} {batch:>5} {f['calls']:>6} {f['median_us']:>10.1f} "
                f"{f['p90_us']:>9.1f} {f['p99_us']:>9.1f} {f['max_us']:>9.1f} "
                f"{f['median_us_per_event']:>9.1f}"
            )
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--pg-dsn", help="benchmark this PostgreSQL instead of starting one")
    args = parser.parse_args()
    args.steps, args.runs = (25, 1) if args.quick else (100, 3)
    report = anyio.run(main, args)
    print(render(report))
    print(f"(events per run: {report['meta']['events_per_run']}; "
          f"PostgreSQL: {report['meta']['postgres']})")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / ("store-quick.json" if args.quick else "store.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    cli()
