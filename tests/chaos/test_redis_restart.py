"""Redis restarts (losing every key) while three ``orchestrator run --redis`` processes share
its locks and class slots: ``verify-log`` on their merged event logs finds no violation.

``tests/orchestrator/coordination/test_redis_processes.py::test_redis_restart_mid_run``
checks the coordinator's own invariants with bare worker processes; this is the same fault
as a user meets it: whole CLI runs, their event files, and the ``verify-log`` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.servers import RedisServer
from tests.test_cli_run import ROOT, orchestrator

LEASE_S = 1.0


def _plan(path: Path, worker: int, marker: Path, go: Path) -> Path:
    shapes = [["db"], ["cache"], ["cache", "db"], ["db"], [], ["cache"]]
    # Every step holds its slot and locks until the test lets go (after the restart).
    wait = f"while [ ! -f {go} ]; do sleep 0.05; done; sleep 0.1"
    steps = "\n".join(
        f"""
      - id: s{j}
        agent: worker
        action: command
        locks: {json.dumps(locks)}
        with: {{argv: [sh, -c, "{wait}"]}}"""
        for j, locks in enumerate(shapes)
    )
    # Worker 0 also holds "report" for long enough to be sure to hold it across the restart.
    hold = f"""
  - id: hold
    team: [batcher]
    steps:
      - id: long
        agent: batcher
        action: command
        locks: [report]
        with: {{argv: [sh, -c, "touch {marker}; {wait}"]}}
"""
    path.write_text(f"""
version: 1
plan: restart-w{worker}
caps: {{cpu: 2, batch: 1}}
defaults: {{retries: 3, backoff: 100ms}}  # a step whose lock the restart took runs again
resources: [db, cache, report]
agents:
  worker: {{class: cpu, can: [command]}}
  batcher: {{class: batch, can: [command]}}
streams:
  - id: w{worker}
    team: [worker]
    steps:{steps}
{hold if worker == 0 else ""}
""")
    return path


def _started(logs: list[Path]) -> int:
    """Short (cpu) steps started so far, in all the logs."""
    text = "".join(log.read_text() for log in logs if log.exists())
    return sum(
        1
        for line in text.splitlines()
        if '"step_started"' in line and json.loads(line).get("resource_class") == "cpu"
    )


def _waiting(logs: list[Path]) -> int:
    """Logs with a step waiting (for a lock or slot) so far."""
    return sum(1 for log in logs if log.exists() and '"step_waiting"' in log.read_text())


def _wait_for(predicate: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def test_redis_restart_mid_run_keeps_verify_log_clean(
    fresh_redis: RedisServer, tmp_path: Path
) -> None:
    time.sleep(fresh_redis.quiet_left_s(LEASE_S))  # a fresh server grants after one lease
    marker, go = tmp_path / "long-started", tmp_path / "go"
    logs = [tmp_path / f"w{i}.jsonl" for i in range(3)]
    env = {
        **os.environ,
        "ORCH_STATE_DIR": str(tmp_path / "state"),
        "ORCH_NAMESPACE": "restart",
        "ORCH_KILL_GRACE_S": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(_plan(tmp_path / f"p{i}.yaml", i,
             marker, go)), "--plain", "--events", str(logs[i]), "--redis", fresh_redis.url,
             "--lease-s", str(LEASE_S)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(3)
    ]  # fmt: skip
    try:
        _wait_for(marker.exists, "the long step's start")
        # Every s0 locks "db": one holds it across the restart, the other two queue for it.
        _wait_for(lambda: _started(logs) >= 1 and _waiting(logs) >= 2, "a holder and 2 waiters")
        fresh_redis.restart(down_s=0.2)
        restarted = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        go.touch()
        outputs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for proc, stderr in zip(procs, outputs, strict=True):
        assert "Traceback" not in stderr and fresh_redis.password not in stderr
        # A step whose lock the restart took may end failed (lock_lost): never a crash.
        assert proc.returncode in (0, 1), stderr
    events = [[json.loads(x) for x in log.read_text().splitlines()] for log in logs]
    assert all(run[0]["coordinator"]["namespace"] == "restart" for run in events)
    assert all(run[-1]["event"] == "run_finished" for run in events)
    started = [e for run in events for e in run if e["event"] == "step_started"]
    assert len({(e["stream"], e["step"]) for e in started}) == 19  # every step ran
    assert sum(e["ts"] > restarted for e in started) >= 16  # grants went on after it
    verified = orchestrator("verify-log", *map(str, logs), state=tmp_path)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("OK: ") and "3 run(s)" in verified.stdout
