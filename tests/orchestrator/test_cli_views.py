"""Issue 17's command line against a real daemon subprocess: ``logs`` (stored and
``--follow``), ``status`` filters, durations and whole run ids when piped, ``cancel`` saying
it rolls back, exit code 5 for a cancelled run, and the daemon's ``run_ended`` warning."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import ROOT, DaemonProcess

PLAN = """
version: 1
plan: {plan}
caps: {{light: null}}
agents:
  helper: {{class: light, can: [command]}}
streams:
  - id: main
    team: [helper]
    rollback:
      steps:
        - {{id: undo, agent: helper, action: command, with: {{argv: [sh, -c, "echo undone"]}}}}
    steps:
      - id: talk
        agent: helper
        action: command
        with: {{argv: [sh, -c, "echo hello-out; echo oops-err >&2"]}}
      - id: hold
        agent: helper
        action: command
        with: {{argv: [sh, -c, "while [ ! -f {go} ]; do sleep 0.05; done; echo held-out; {end}"]}}
"""


def write_plan(tmp: Path, name: str, *, end: str = "true", plan: str = "views") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(PLAN.format(plan=plan, go=tmp / f"{name}.go", end=end))
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path).start()
    yield process
    process.close()


def spawn(daemon: DaemonProcess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=daemon.env(),
        cwd=ROOT,
    )


def wait_for_step(daemon: DaemonProcess, run_id: str, step: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        run = daemon.call("runs.get", {"run_id": run_id})
        steps = {s["step"]: s["status"] for st in run.get("streams", []) for s in st["steps"]}
        if steps.get(step) == "running":
            return
        assert time.monotonic() < deadline, f"{step} never ran: {run}"
        time.sleep(0.05)


def test_logs_stored_and_followed(daemon: DaemonProcess, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, "logs")
    run_id = daemon.cli("submit", str(plan)).stdout.strip()
    wait_for_step(daemon, run_id, "hold")
    follower = spawn(daemon, "logs", run_id, "main/hold", "--follow")
    (tmp_path / "logs.go").touch()
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    assert "== main/hold attempt 1: succeeded ==" in out and "held-out" in out
    assert "hello-out" not in out  # only the step asked for
    daemon.wait_for(run_id, {"succeeded"})

    shown = daemon.cli("logs", run_id, "main/talk")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        "== main/talk attempt 1: succeeded ==",
        "[stdout]",
        "hello-out",
        "[stderr]",
        "oops-err",
    ]
    every = json.loads(daemon.cli("logs", run_id, "-o", "json").stdout)
    assert [(o["step"], o["stdout_tail"]) for o in every] == [
        ("talk", "hello-out\n"),
        ("hold", "held-out\n"),
    ]
    missing = daemon.cli("logs", "no-such-run")
    assert missing.returncode == 1 and "no run 'no-such-run'" in missing.stderr
    bad = daemon.cli("logs", run_id, "a/b/c")
    assert bad.returncode == 2 and "STREAM/STEP" in bad.stderr


def test_status_filters_durations_and_whole_run_ids(daemon: DaemonProcess, tmp_path: Path) -> None:
    (tmp_path / "ok.go").touch()
    (tmp_path / "bad.go").touch()
    ok = daemon.cli("submit", str(write_plan(tmp_path, "ok", plan="alpha")), "--wait")
    assert ok.returncode == 0, ok.stderr
    bad = daemon.cli(
        "submit", str(write_plan(tmp_path, "bad", end="exit 3", plan="beta")), "--wait"
    )
    assert bad.returncode == 1, bad.stderr
    ok_id, bad_id = ok.stdout.strip(), bad.stdout.strip()

    piped = daemon.cli("status")  # stdout is a pipe: no 80-column cut
    assert piped.returncode == 0, piped.stderr
    rows = {line.split()[0]: line.split() for line in piped.stdout.splitlines()[1:]}
    assert set(rows) == {ok_id, bad_id}  # whole ids
    assert rows[ok_id][1:3] == ["alpha", "succeeded"] and rows[bad_id][1:3] == ["beta", "failed"]
    assert "duration" in piped.stdout.splitlines()[0]

    def listed(*args: str) -> list[str]:
        reply = daemon.cli("status", "-o", "json", *args)
        assert reply.returncode == 0, reply.stderr
        return [r["run_id"] for r in json.loads(reply.stdout)["runs"]]

    assert listed("--status", "failed") == [bad_id]
    assert listed("--plan", "alpha") == [ok_id]
    assert listed("--plan", "gamma") == []
    assert sorted(listed("--since", "1h")) == sorted([ok_id, bad_id])
    assert listed("--since", "2999-01-01T00:00:00Z") == []
    assert listed("--plan", "beta", "--status", "succeeded") == []
    for run in json.loads(daemon.cli("status", "-o", "json").stdout)["runs"]:
        assert run["created_at"] <= run["started_at"] <= run["finished_at"]
        assert run["duration_s"] is not None and run["duration_s"] >= 0
    wrong = daemon.cli("status", "--since", "yesterday-ish")
    assert wrong.returncode == 2 and "--since" in wrong.stderr

    log = daemon.log_text().splitlines()
    ended = [json.loads(line) for line in log if '"run_ended"' in line]
    by_run = {e["run_id"]: e for e in ended}
    assert by_run[ok_id]["level"] == "info"
    assert by_run[bad_id]["level"] == "warning"
    assert by_run[bad_id]["reason"].startswith("main: failed: step failed: hold")
    assert all("ts" in e and "timestamp" not in e for e in ended)  # the event log's key


def test_cancel_says_it_rolls_back_and_a_cancelled_run_exits_5(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, "cancel")
    waiter = spawn(daemon, "submit", str(plan), "--wait")
    assert waiter.stdout is not None
    run_id = waiter.stdout.readline().strip()
    wait_for_step(daemon, run_id, "hold")
    cancelled = daemon.cli("cancel", run_id, "-o", "json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "rolling back" in cancelled.stderr
    assert json.loads(cancelled.stdout) == {"run_id": run_id, "status": "cancelled"}
    _, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 5, err
    watched = daemon.cli("watch", run_id)
    assert watched.returncode == 5 and "(exit code 5)" in watched.stderr


def test_submit_wait_on_a_terminal_shows_the_live_view(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """stderr on a terminal (a pty): the live view with its header line; stdout, a pipe,
    still carries the run id alone."""
    (tmp_path / "live.go").touch()
    main, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "submit",
            str(write_plan(tmp_path, "live")),
            "--wait",
        ],
        stdout=subprocess.PIPE,
        stderr=follower,
        text=True,
        env={**daemon.env(), "COLUMNS": "160", "TERM": "xterm"},
        cwd=ROOT,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    run_id = out.strip()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    assert f"run {run_id} (views): succeeded" in text
    assert "2/2 steps done" in text and "elapsed" in text, text
    assert "━" in text  # the progress bars of the live table, not plain lines
