"""``orchestrator run`` under operator faults: unreachable or misconfigured coordinators and
stores give one clear line (no traceback), and a second Ctrl-C abandons the rollback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers import RedisServer
from tests.test_cli_run import ROOT, _alive, orchestrator, write_plan

PLAN = """
  - id: s
    team: [worker]
    steps:
      - id: quick
        agent: worker
        action: sleep
        with: {seconds: 0}
"""


def _one_clear_line(done: subprocess.CompletedProcess[str], secret: str) -> str:
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    assert secret not in done.stderr + done.stdout
    problem = [line for line in done.stderr.splitlines() if "fix:" in line]
    assert len(problem) == 1, done.stderr
    return problem[0]


def test_wrong_redis_password_is_one_clear_line(tmp_path: Path, redis_server: RedisServer) -> None:
    plan = write_plan(tmp_path / "p.yaml", PLAN)
    wrong = "not-the-password-4711"
    done = orchestrator("run", str(plan), "--redis", redis_server.url_with(wrong), state=tmp_path)
    assert done.returncode == 1
    line = _one_clear_line(done, wrong)
    assert f"redis://:***@127.0.0.1:{redis_server.port}/0" in line
    assert "authentication failed" in line and "password" in line


def test_unreachable_redis_is_one_clear_line(tmp_path: Path) -> None:
    from tests.ports import free_port

    plan = write_plan(tmp_path / "p.yaml", PLAN)
    url = f"redis://:hidden-pw-0815@127.0.0.1:{free_port()}/0"
    done = orchestrator("run", str(plan), "--redis", url, state=tmp_path)
    assert done.returncode == 1
    line = _one_clear_line(done, "hidden-pw-0815")
    assert "cannot connect" in line and "redis-server runs at this host and port" in line


def test_bad_postgres_dsn_is_one_clear_line(tmp_path: Path) -> None:
    from tests.ports import free_port

    plan = write_plan(tmp_path / "p.yaml", PLAN)
    dsn = f"postgresql://orch:pg-secret-9911@127.0.0.1:{free_port()}/orch"
    env = {**os.environ, "ORCH_STATE_DIR": str(tmp_path), "ORCH_STORE": dsn}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan), "--plain"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    # The run itself needs no store: it succeeds and says in one line why it is not recorded.
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "pg-secret-9911" not in done.stderr
    assert "postgresql://orch:***@127.0.0.1" in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_interrupt_abandons_the_rollback_and_exits_130(
    tmp_path: Path, sig: signal.Signals
) -> None:
    step_pid, rollback_pid = tmp_path / "step.pid", tmp_path / "rollback.pid"
    plan = write_plan(
        tmp_path / "p.yaml",
        f"""
  - id: s
    team: [worker]
    steps:
      - id: long
        agent: worker
        action: command
        with: {{argv: [sh, -c, "echo $$ > {step_pid}; exec sleep 300"]}}
    rollback:
      steps:
        - id: slow-undo
          agent: worker
          action: command
          with: {{argv: [sh, -c, "echo $$ > {rollback_pid}; exec sleep 300"]}}
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
    try:
        _wait_for_pid(step_pid)
        proc.send_signal(sig)
        undo = _wait_for_pid(rollback_pid)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "rolling back, Ctrl-C again to abandon" in stderr
    assert "Aborted!" not in stderr and "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while _alive(undo):
        assert time.monotonic() < deadline, "the abandoned rollback step is still running"
        time.sleep(0.05)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    abandoned = [e for e in lines if e["event"] == "rollback_abandoned"]
    assert [e["stream"] for e in abandoned] == ["s"]
    undo_end = [e for e in lines if e["event"] == "step_finished" and e["step"] == "slow-undo"]
    assert undo_end and undo_end[-1]["status"] == "cancelled"
    assert lines[-1]["event"] == "run_finished" and lines[-1]["status"] == "cancelled"


def _wait_for_pid(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return int(path.read_text())
