"""``orchestrator run`` and ``verify-log`` as a user runs them: real processes, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def orchestrator(*args: str, state: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCH_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def write_plan(path: Path, streams: str) -> Path:
    path.write_text(f"""
version: 1
plan: cli-test
caps: {{cpu: 1, light: null}}
resources: [redis]
agents:
  worker: {{class: cpu, can: [command, sleep]}}
streams:
{streams}
""")
    return path


def test_example_plan_runs_and_its_log_verifies(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    done = orchestrator("run", "examples/phase2.yaml", "--events", str(events), state=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stderr and "Traceback" not in done.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert lines[0]["event"] == "run_started" and lines[-1]["event"] == "run_finished"
    assert lines[-1]["status"] == "succeeded"
    for line in lines:
        assert {"ts", "event", "run_id"} <= line.keys()
        assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-11-21T16:15:00.123456Z")
    verified = orchestrator("verify-log", str(events), state=tmp_path)
    assert verified.returncode == 0 and verified.stdout.startswith("OK")


def test_default_events_file_is_under_the_state_dir(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yaml",
        """
  - id: s
    team: [worker]
    steps: [{id: a, agent: worker, action: sleep, with: {seconds: 0}}]
""",
    )
    done = orchestrator("run", str(plan), state=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    files = list((tmp_path / "state" / "runs").glob("*/events.jsonl"))
    assert len(files) == 1 and str(files[0]) in done.stderr


def test_failed_stream_exits_1_and_says_why(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yaml",
        """
  - id: broken
    team: [worker]
    steps: [{id: a, agent: worker, action: command, with: {argv: [sh, -c, "exit 7"]}}]
""",
    )
    done = orchestrator("run", str(plan), "--events", str(tmp_path / "e.jsonl"), state=tmp_path)
    assert done.returncode == 1
    assert "stream broken: failed: step failed: a (failed)" in done.stderr


def test_invalid_plan_exits_2_with_the_place(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p.yaml",
        """
  - id: s
    team: [worker]
    steps: [{id: a, agent: nobody, action: sleep}]
""",
    )
    done = orchestrator("run", str(plan), state=tmp_path)
    assert done.returncode == 2
    assert f"{plan}:12:" in done.stderr and "unknown agent 'nobody'" in done.stderr
    assert "Traceback" not in done.stderr


def test_verify_log_finds_a_violation(tmp_path: Path) -> None:
    log = tmp_path / "bad.jsonl"
    base = {"run_id": "r", "stream": "s", "resource_class": "cpu", "attempt": 1}
    rows = [
        {
            "ts": "2026-01-01T00:00:00.000001Z",
            "event": "run_started",
            "run_id": "r",
            "caps": {"cpu": 1},
        },
        {
            "ts": "2026-01-01T00:00:00.000002Z",
            "event": "step_started",
            "step": "a",
            "locks": ["redis"],
            **base,
        },
        {
            "ts": "2026-01-01T00:00:00.000003Z",
            "event": "step_started",
            "step": "b",
            "locks": ["redis"],
            **base,
        },
    ]
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    done = orchestrator("verify-log", str(log), state=tmp_path)
    assert done.returncode == 1
    assert "class 'cpu' ran 2 steps at once, cap 1" in done.stdout
    assert "lock 'redis' already held by r/s/a" in done.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_steps_kills_subprocesses_and_exits_130(
    tmp_path: Path, sig: signal.Signals
) -> None:
    pidfile = tmp_path / "child.pid"
    plan = write_plan(
        tmp_path / "p.yaml",
        f"""
  - id: s
    team: [worker]
    steps:
      - id: long
        agent: worker
        action: command
        with: {{argv: [sh, -c, "sleep 300 & echo $! > {pidfile}; wait"]}}
""",
    )
    events = tmp_path / "e.jsonl"
    env = {**os.environ, "ORCH_STATE_DIR": str(tmp_path), "ORCH_KILL_GRACE_S": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(plan), "--events", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "the step's subprocess survived the interrupt"
        time.sleep(0.05)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    finished = [e for e in lines if e["event"] == "step_finished"]
    assert finished and finished[-1]["status"] == "cancelled"
    assert lines[-1]["event"] == "run_finished" and lines[-1]["status"] == "cancelled"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_run_is_recorded_in_the_state_dirs_store(tmp_path: Path) -> None:
    import anyio

    from orchestrator.store import open_store

    done = orchestrator("run", "examples/phase2.yaml", "--plain", state=tmp_path)
    assert done.returncode == 0, done.stderr

    async def read() -> tuple[list[str], list[str]]:
        async with open_store(None, state_dir=tmp_path) as store:
            runs = await store.list_runs()
            events = await store.read_events(runs[0].run_id, limit=10_000)
        return [r.status for r in runs], [e["event"] for e in events]

    statuses, names = anyio.run(read)
    assert statuses == ["succeeded"]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("gate_evaluated") == 4 and "evidence_collected" in names
