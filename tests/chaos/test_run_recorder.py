"""Chaos: ``kill -9`` of an ``orchestrator run`` whose events a recorder process stores.

The recorder (:mod:`orchestrator.store.recorder`) stores what the run sent it, whatever
becomes of the run: killed mid-run, the run's events up to the moment of the kill are in
the store, none torn or out of order, and the recorder exits by itself. The store's
password travels on the recorder's stdin, never on its command line (which any user of
the machine can read).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncpg
import orjson

from tests.servers_postgres import PostgresServer
from tests.test_cli_run import ROOT

T = TypeVar("T")

PLAN = """\
version: 1
plan: killed
caps: {light: null}
agents:
  worker: {class: light, can: [sleep]}
streams:
  - id: s
    team: [worker]
    steps:
      - {id: a, agent: worker, action: sleep, with: {seconds: 0}}
      - {id: b, agent: worker, action: sleep, with: {seconds: 0}, needs: [a]}
      - {id: long, agent: worker, action: sleep, with: {seconds: 120}, needs: [b]}
"""


def test_kill_9_of_the_run_leaves_what_the_recorder_was_sent_stored(
    tmp_path: Path, fresh_postgres: PostgresServer
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "ORCH_STATE_DIR": str(tmp_path / "state"),
        "ORCH_STORE": fresh_postgres.dsn,
    }
    argv = ["run", str(plan), "--plain", "--events", str(events)]
    run = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        recorder = _recorder_of(run.pid)
        cmdline = Path(f"/proc/{recorder}/cmdline").read_bytes().decode()
        assert fresh_postgres.password not in cmdline and "orchestrator.store.recorder" in cmdline
        run_id = _wait_for(lambda: _run_id(events), "the run's first event")
        # Once the long step's start is stored, the kill lands while it runs.
        _wait_for(
            lambda: "step_started" in _stored_kinds(fresh_postgres.dsn, run_id, "long"),
            "the long step's start in the store",
        )
    finally:
        run.kill()
        run.wait(timeout=30)
    _wait_for(lambda: _alive(recorder) is False, "the recorder to exit after the run's death")
    written = [orjson.loads(line) for line in events.read_bytes().splitlines()]
    stored = anyio.run(_stored_events, fresh_postgres.dsn, run_id)
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    assert stored == written[: len(stored)]  # the file's events, none torn or changed
    assert anyio.run(_run_status, fresh_postgres.dsn, run_id) == "running"  # as it was left


def _recorder_of(pid: int) -> int:
    def child() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status and b"orchestrator.store.recorder" in cmdline:
                return int(entry.name)
        return None

    return _wait_for(child, "the run's recorder process")


def _alive(pid: int) -> bool | None:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _run_id(events: Path) -> str | None:
    if not events.exists() or not events.read_bytes().strip():
        return None
    first: dict[str, Any] = orjson.loads(events.read_bytes().splitlines()[0])
    return str(first["run_id"])


def _stored_kinds(dsn: str, run_id: str, step: str) -> list[str]:
    return [e["event"] for e in anyio.run(_stored_events, dsn, run_id) if e.get("step") == step]


async def _stored_events(dsn: str, run_id: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT body::text FROM orchestrator.events WHERE run_id = $1 ORDER BY seq", run_id
        )
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await conn.close()
    return [orjson.loads(row[0]) for row in rows]


async def _run_status(dsn: str, run_id: str) -> str:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return str(
            await conn.fetchval("SELECT status FROM orchestrator.runs WHERE run_id = $1", run_id)
        )
    finally:
        await conn.close()


def _wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
