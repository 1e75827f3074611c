"""Chaos: a lock holder frozen past its lease stops writing before anyone else is granted.

Two ``orchestrator run --redis --lease-s 2`` processes contend for lock ``db``; their steps
append ``<fence> <wall time>`` lines to one file while they hold it. The holder is SIGSTOPped
for 6 s, then SIGCONTed. The other is granted the lock once the frozen holder's lease has
ended; from then on no line may carry the frozen holder's fence (its step was ended by the
watchdog before its lease could end), and the frozen holder's step is recorded failed with
``lock_lost``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent.parent
LEASE_S = 2.0
FROZEN_S = 6.0


def _plan(writes: Path, who: str, rounds: int) -> str:
    line = f'echo "$ORCH_FENCE_DB $(date +%s.%N) {who}" >> {writes}'
    return f"""
version: 1
plan: lease-{who}
caps: {{cpu: 1}}
resources: [db]
agents:
  worker: {{class: cpu, can: [command]}}
streams:
  - id: s
    team: [worker]
    steps:
      - id: write
        agent: worker
        action: command
        locks: [db]
        retries: 0
        timeout: 120s
        with:
          argv:
            - sh
            - -c
            - |
              for i in $(seq {rounds}); do {line}; sleep 0.05; done
"""


def _start(tmp: Path, who: str, plan_text: str, redis_url: str) -> subprocess.Popen[bytes]:
    plan = tmp / f"{who}.yaml"
    plan.write_text(plan_text)
    env = {**os.environ, "ORCH_STATE_DIR": str(tmp / f"state-{who}"), "ORCH_KILL_GRACE_S": "1"}
    with (tmp / f"{who}.err").open("wb") as err:  # the child keeps its own descriptor
        return _popen(plan, tmp / f"{who}.jsonl", redis_url, env, err)


def _popen(
    plan: Path, events: Path, redis_url: str, env: dict[str, str], err: Any
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(plan),
            "--plain",
            "--redis",
            redis_url,
            "--lease-s",
            str(LEASE_S),
            "--events",
            str(events),
        ],
        stdout=subprocess.DEVNULL,
        stderr=err,
        env=env,
        cwd=ROOT,
    )


def _lines(writes: Path) -> list[tuple[int, float, str]]:
    if not writes.exists():
        return []
    rows = []
    for line in writes.read_text().splitlines():
        fence, at, who = line.split()
        rows.append((int(fence), float(at), who))
    return rows


def _span(rows: list[tuple[int, float, str]]) -> float:
    return rows[-1][1] - rows[0][1] if rows else 0.0


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait(what: str, condition: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_frozen_holder_stops_before_the_other_is_granted(
    tmp_path: Path, fresh_redis: RedisServer
) -> None:
    writes = tmp_path / "writes.txt"
    # The holder would write for ~10 s; the contender for ~1 s once granted.
    a = _start(tmp_path, "a", _plan(writes, "a", 200), fresh_redis.url)
    b: subprocess.Popen[bytes] | None = None
    try:
        # Writing for two leases proves that renewals keep extending its kill time.
        _wait("a writes for two leases", lambda: _span(_lines(writes)) >= 2 * LEASE_S)
        b = _start(tmp_path, "b", _plan(writes, "b", 20), fresh_redis.url)
        _wait(
            "b queues",
            lambda: (
                "step_waiting" in (tmp_path / "b.jsonl").read_text()
                if (tmp_path / "b.jsonl").exists()
                else False
            ),
        )
        a.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        _wait("b is granted", lambda: any(w == "b" for _, _, w in _lines(writes)))
        granted_after_s = time.monotonic() - stopped
        time.sleep(max(0.0, FROZEN_S - (time.monotonic() - stopped)))  # the freeze itself
        a.send_signal(signal.SIGCONT)
        a_code, b_code = a.wait(timeout=60), b.wait(timeout=60)
    finally:
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=10)

    rows = _lines(writes)
    fence_a = {f for f, _, w in rows if w == "a"}
    fence_b = {f for f, _, w in rows if w == "b"}
    assert len(fence_a) == 1 and len(fence_b) == 1 and max(fence_a) < min(fence_b)
    b_first = min(at for _, at, w in rows if w == "b")
    stale = [r for r in rows if r[2] == "a" and r[1] >= b_first]
    assert stale == [], f"{len(stale)} writes by the frozen holder after the other was granted"
    print(f"lease {LEASE_S:g}s: b granted {granted_after_s:.2f}s after SIGSTOP; stale writes 0")
    assert b_code == 0, (tmp_path / "b.err").read_text()
    assert a_code == 1, (tmp_path / "a.err").read_text()

    finished = [e for e in _events(tmp_path / "a.jsonl") if e["event"] == "step_finished"]
    assert [e["status"] for e in finished] == ["failed"]
    assert finished[0]["reason"].startswith("lock_lost")
