"""Chaos: no step process outlives the daemon or ``orchestrator run`` process that started it.

Every step starts children in its process group, ``setsid`` grandchildren (in sessions of
their own) and a ``setsid`` shell with a child of its own. The parent is SIGKILLed; every
process of the steps' trees must be gone soon after, as ``/proc`` shows. When the watchdog
is killed with its daemon, the next daemon on the same state directory reaps the trees.
Every process of a test carries a nonce in its command line, which is how they are counted
(independently of the token the product uses to find them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon_process import DaemonProcess
from tests.procs import survivors

ROOT = Path(__file__).resolve().parent.parent.parent
STEPS = 3
#: Generous bound for a loaded 2-core machine; the measured latency is far below it.
GONE_WITHIN_S = 15.0


def _plan(ready: Path, nonce: str) -> str:
    streams = []
    for i in range(STEPS):
        d = [f"{5000 + 10 * i + k}.{nonce}" for k in range(4)]
        script = (
            f"sleep {d[0]} & sleep {d[1]} & setsid sleep {d[2]} & "
            f"setsid sh -c 'sleep {d[3]} & wait' & "
            f"echo $$ > {ready}/{i}.tmp && mv {ready}/{i}.tmp {ready}/{i}; wait"
        )
        streams.append(f"""
  - id: s{i}
    team: [worker]
    steps:
      - id: spawn
        agent: worker
        action: command
        timeout: 300s
        with: {{argv: [sh, -c, "{script}"]}}
""")
    return f"""
version: 1
plan: containment-chaos
caps: {{cpu: {STEPS}}}
agents:
  worker: {{class: cpu, can: [command]}}
streams:
{"".join(streams)}
"""


def _wait_ready(ready: Path, what: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < STEPS or any(p.suffix for p in ready.iterdir()):
        assert what is None or what.poll() is None, "the run ended before its steps started"
        assert time.monotonic() < deadline, "the steps never started"
        time.sleep(0.05)


def _gone_after(nonce: str) -> float:
    """Seconds until no process of the nonce is left (fails past GONE_WITHIN_S)."""
    start = time.monotonic()
    while survivors(nonce):
        left = survivors(nonce)
        assert time.monotonic() - start < GONE_WITHIN_S, f"{len(left)} step processes survived"
        time.sleep(0.01)
    return time.monotonic() - start


def _children_named(parent: int, marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent and marker.encode() in cmdline:
            found.append(int(name))
    return found


def test_sigkill_of_orchestrator_run_leaves_no_step_process(tmp_path: Path, nonce: str) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan(ready, nonce))
    env = {**os.environ, "ORCH_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(plan), "--plain"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        _wait_ready(ready, proc)
        assert len(survivors(nonce)) >= STEPS * 5
        proc.kill()
        proc.wait(timeout=10)
        latency_s = _gone_after(nonce)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    print(f"orchestrator run SIGKILL: all step processes gone after {latency_s:.3f}s")


def test_sigkill_of_daemon_leaves_no_step_process(tmp_path: Path, nonce: str) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    daemon = DaemonProcess(tmp_path).start()
    try:
        reply = daemon.call("submit", {"plan_text": _plan(ready, nonce)})
        assert "run_id" in reply, reply
        _wait_ready(ready, daemon.proc)
        assert len(survivors(nonce)) >= STEPS * 5
        daemon.kill()
        latency_s = _gone_after(nonce)
    finally:
        daemon.close()
    print(f"daemon SIGKILL: all step processes gone after {latency_s:.3f}s")


def test_next_daemon_reaps_what_a_killed_watchdog_left(tmp_path: Path, nonce: str) -> None:
    ready = tmp_path / "ready"
    ready.mkdir()
    daemon = DaemonProcess(tmp_path).start()
    try:
        reply = daemon.call("submit", {"plan_text": _plan(ready, nonce)})
        assert "run_id" in reply, reply
        _wait_ready(ready, daemon.proc)
        assert daemon.proc is not None
        (dog,) = _children_named(daemon.proc.pid, "watchdog.py")
        # Stopped first, so that it cannot act on its daemon's death before it is killed.
        os.kill(dog, signal.SIGSTOP)
        daemon.kill()
        os.kill(dog, signal.SIGKILL)
        records = list((daemon.state / "watchdog").glob("*.procs"))
        assert len(records) == 1
        orphans = survivors(nonce)
        assert len(orphans) >= STEPS * 5, "without a watchdog the trees stay (the scenario)"

        started = time.monotonic()
        successor = DaemonProcess(tmp_path).start()
        try:
            latency_s = _gone_after(nonce)
            assert not records[0].exists()
            assert "predecessor_reaped" in successor.log_text()
        finally:
            successor.close()
    finally:
        daemon.close()
    print(
        f"successor daemon reaped {len(orphans)} orphans; "
        f"gone {time.monotonic() - started:.3f}s after its start ({latency_s:.3f}s after ready)"
    )
