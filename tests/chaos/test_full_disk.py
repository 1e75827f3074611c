"""Chaos: the daemon's state directory fills up (a 1 MiB tmpfs), then gets space back.

The run store (SQLite: SQLITE_FULL), the runs' event files (ENOSPC) and, separately, the
daemon's own log (stderr on /dev/full) cannot be written. Required: the daemon keeps
serving; a run that cannot record its next step's start does not start it and fails with a
clear reason after ``store_wait_s``; a run whose store comes back in time goes on; nothing
already recorded is lost; and recording (store and event file) resumes when space returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import ROOT, DaemonProcess
from tests.helpers import small_tmpfs

pytestmark = pytest.mark.slow

PLAN = """
version: 1
plan: {name}
caps: {{cpu: 2}}
agents:
  worker: {{class: cpu, can: [command]}}
streams:
  - id: main
    team: [worker]
    steps:
      - id: first
        agent: worker
        action: command
        with: {{argv: [sh, -c, "echo first >> {log}; while [ ! -f {go} ]; do sleep 0.05; done"]}}
      - id: second
        agent: worker
        action: command
        with: {{argv: [sh, -c, "echo second >> {log}"]}}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (CI runs as root); skipped, saying why, where mounting is refused."""
    with small_tmpfs(tmp_path / "small", "1m") as mount:
        yield mount


def fill(disk: Path) -> Path:
    """Write a file until the disk is full; return it (delete it to give space back)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        while True:
            try:
                out.write(chunk)
            except OSError:
                break
        for size in (4096, 512, 1):  # the last partial blocks too
            while True:
                try:
                    out.write(b"\0" * size)
                except OSError:
                    break
    return filler


def wait_for(predicate: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def log_events(daemon: DaemonProcess, name: str, run_id: str) -> list[dict[str, object]]:
    found = []
    for line in daemon.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name and entry.get("run_id") == run_id:
                found.append(entry)
    return found


def test_a_full_state_directory_never_stops_the_daemon(tmp_path: Path, small_disk: Path) -> None:
    plans = {}
    for name in ("recovers", "gives-up"):
        plans[name] = tmp_path / f"{name}.yaml"
        plans[name].write_text(
            PLAN.format(name=name, log=tmp_path / f"{name}.log", go=tmp_path / f"{name}.go")
        )
    # State (store, event files) on the small disk; the daemon's log beside it, readable.
    daemon = DaemonProcess(tmp_path, ORCH_STATE_DIR=str(small_disk), ORCH_STORE_WAIT_S="3")
    daemon.start()
    try:
        ids = {name: daemon.cli("submit", str(path)).stdout.strip() for name, path in plans.items()}
        assert all(ids.values()), daemon.log_text()[-2000:]
        for name in plans:
            log = tmp_path / f"{name}.log"
            wait_for(lambda log=log: log.exists() and "first" in log.read_text(), "first ran")

        # 1. Full while "recovers" finishes a step: nothing recorded; space back within
        #    store_wait_s: it goes on and succeeds.
        filler = fill(small_disk)
        refused = daemon.cli("submit", str(plans["recovers"]))
        assert refused.returncode != 0 and "full" in refused.stderr.lower(), refused.stderr
        assert "Traceback" not in refused.stderr
        assert daemon.call("health")["status"] == "ok"
        (tmp_path / "recovers.go").touch()
        wait_for(lambda: log_events(daemon, "store_unavailable", ids["recovers"]), "store full")
        assert daemon.call("health")["status"] == "ok"
        assert "second" not in (tmp_path / "recovers.log").read_text()  # not started unrecorded
        filler.unlink()
        recovered = daemon.wait_for(ids["recovers"], {"succeeded", "failed"})
        assert recovered["status"] == "succeeded"
        assert log_events(daemon, "store_recovered", ids["recovers"])

        # 2. Full for longer than store_wait_s: "gives-up" fails its next step by name,
        #    never starting it; what it recorded is kept; it records the end once space is back.
        filler = fill(small_disk)
        (tmp_path / "gives-up.go").touch()
        wait_for(lambda: log_events(daemon, "step_not_started", ids["gives-up"]), "gave up")
        assert daemon.call("health")["status"] == "ok"
        filler.unlink()
        ended = daemon.wait_for(ids["gives-up"], {"succeeded", "failed"})
        assert ended["status"] == "failed"
        steps = {s["step"]: s for s in ended["streams"][0]["steps"]}
        assert steps["second"]["status"] == "failed"
        assert "not started" in steps["second"]["reason"]
        assert "full" in steps["second"]["reason"]
        assert (tmp_path / "gives-up.log").read_text().splitlines() == ["first"]

        # Nothing lost: each run's event file holds exactly the stored events, in order.
        for run_id in ids.values():
            stored = [
                json.loads(line)["seq"]
                for line in daemon.cli("watch", run_id, "--json").stdout.splitlines()
            ]
            assert stored == list(range(1, len(stored) + 1))
            path, count = small_disk / "runs" / run_id / "events.jsonl", len(stored)
            wait_for(
                lambda path=path, n=count: len(path.read_text().splitlines()) == n,
                "event file caught up",
            )
            in_file = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
            assert in_file == stored
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.close()


def test_a_daemon_whose_log_cannot_be_written_keeps_serving(tmp_path: Path) -> None:
    """stderr on /dev/full: every diagnostic line fails with ENOSPC."""
    daemon = DaemonProcess(tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(name="quiet", log=tmp_path / "steps.log", go=plan))
    with open("/dev/full", "wb") as full:
        daemon.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "daemon"],
            stdout=full,
            stderr=full,
            env=daemon.env(),
            cwd=ROOT,
        )
    try:
        wait_for(lambda: daemon.socket.exists(), "socket")
        wait_for(lambda: _healthy(daemon), "health")
        done = daemon.cli("submit", str(plan), "--wait")
        assert done.returncode == 0, done.stderr
        assert daemon.call("health")["status"] == "ok"
        assert daemon.proc.poll() is None
    finally:
        daemon.close()


def _healthy(daemon: DaemonProcess) -> bool:
    try:
        return bool(daemon.call("health")["status"] == "ok")
    except OSError:
        return False
