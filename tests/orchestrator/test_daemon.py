"""The daemon as a user runs it: a real subprocess, the CLI as a client, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_process import ROOT, DaemonProcess, lines
from tests.servers_postgres import PostgresServer

PLAN = """
version: 1
plan: daemon-test
caps: {{cpu: 1, io: 2, light: null}}
resources: [redis]
agents:
  worker: {{class: cpu, can: [command, sleep]}}
  helper: {{class: light, can: [command, sleep]}}
streams:
  - id: main
    team: [worker, helper]
    steps:
      - id: first
        agent: helper
        action: command
        with: {{argv: [sh, -c, "echo first >> {log}"]}}
      - id: hold
        agent: worker
        action: command
        locks: [redis]
        idempotent: {idempotent}
        with: {{argv: [sh, -c, "echo hold >> {log}; while [ ! -f {go} ]; do sleep 0.05; done"]}}
      - {{id: last, agent: helper, action: command, with: {{argv: [sh, -c, "echo last >> {log}"]}}}}
  - id: side
    team: [helper]
    steps:
      - {{id: quick, agent: helper, action: sleep, with: {{seconds: 0.05}}}}
"""


def write_plan(tmp: Path, *, idempotent: bool = False) -> tuple[Path, Path, Path]:
    log, go = tmp / "steps.log", tmp / "go"
    plan = tmp / "plan.yaml"
    plan.write_text(PLAN.format(log=log, go=go, idempotent=str(idempotent).lower()))
    return plan, log, go


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str | None:
    """The run store the daemon uses: its default SQLite file, or a fresh PostgreSQL."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("fresh_postgres")
    return server.dsn


@pytest.fixture
def daemon(tmp_path: Path, store: str | None) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path, store=store, ORCH_IDLE_TIMEOUT_S="2").start()
    yield process
    process.close()


@pytest.fixture
def sqlite_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """For tests of the socket itself, which do not depend on the store."""
    process = DaemonProcess(tmp_path, ORCH_IDLE_TIMEOUT_S="2").start()
    yield process
    process.close()


def _wait_until(predicate: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def test_submit_wait_status_watch_agents_locks(daemon: DaemonProcess, tmp_path: Path) -> None:
    plan, log, go = write_plan(tmp_path)
    submitted = daemon.cli("submit", str(plan))
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert run_id and "\n" not in run_id  # the run id alone on stdout
    _wait_until(lambda: log.exists() and "hold" in log.read_text())

    agents = json.loads(daemon.cli("agents", "--run", run_id, "--json").stdout)["agents"]
    worker = next(a for a in agents if a["agent"] == "worker")
    assert worker["state"] == "running" and set(worker["locks_held"]) == {"redis"}
    locks = json.loads(daemon.cli("locks", "--json").stdout)
    redis = next(r for r in locks["resources"] if r["resource"] == "redis")
    assert redis["holder"]["step"] == "hold" and redis["fence"] >= 1
    cpu = next(c for c in locks["classes"] if c["class"] == "cpu")
    assert cpu["in_use"] == 1 and cpu["cap"] == 1

    go.touch()
    watched = daemon.cli("watch", run_id, "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no dupe

    listed = json.loads(daemon.cli("status", "--json").stdout)["runs"]
    assert listed[0]["run_id"] == run_id and listed[0]["status"] == "succeeded"
    detail = json.loads(daemon.cli("status", run_id, "--json").stdout)
    assert {s["stream"]: s["status"] for s in detail["streams"]} == {
        "main": "succeeded",
        "side": "succeeded",
    }
    human = daemon.cli("status", run_id)
    assert "hold" in human.stdout and "succeeded" in human.stdout


def test_submit_wait_exit_codes(daemon: DaemonProcess, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(PLAN.format(log=tmp_path / "l", go=good, idempotent="false"))
    done = daemon.cli("submit", str(good), "--wait")
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(PLAN.format(log=tmp_path / "l", go=good, idempotent="maybe"))
    refused = daemon.cli("submit", str(bad), "--wait")
    assert refused.returncode == 2
    assert f"{bad}:" in refused.stderr and "idempotent" in refused.stderr
    failing = tmp_path / "fail.yaml"
    failing.write_text(
        PLAN.format(log=tmp_path / "l", go=good, idempotent="false").replace(
            "echo last >>", "exit 3; echo"
        )
    )
    failed = daemon.cli("submit", str(failing), "--wait")
    assert failed.returncode == 1


def test_cancel_stops_the_run_and_records_it(daemon: DaemonProcess, tmp_path: Path) -> None:
    plan, log, _ = write_plan(tmp_path)
    run_id = daemon.cli("submit", str(plan)).stdout.strip()
    _wait_until(lambda: log.exists() and "hold" in log.read_text())
    cancelled = daemon.cli("cancel", run_id)
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stderr
    run = daemon.wait_for(run_id, {"cancelled"})
    hold = next(s for s in run["streams"][0]["steps"] if s["step"] == "hold")
    assert hold["status"] == "cancelled"
    again = daemon.cli("cancel", run_id)
    assert again.returncode != 0 and "already ended" in again.stderr


def _stream_stored(daemon: DaemonProcess, run_id: str, stream: str) -> str | None:
    """The status the run store holds for ``stream`` of ``run_id``."""
    run = daemon.call("runs.get", {"run_id": run_id})
    return next((s["status"] for s in run["streams"] if s["stream"] == stream), None)


def test_runs_survive_sigkill_idempotent_step_reruns(tmp_path: Path, store: str | None) -> None:
    plan, log, go = write_plan(tmp_path, idempotent=True)
    first = DaemonProcess(tmp_path, store=store).start()
    try:
        run_id = first.cli("submit", str(plan)).stdout.strip()
        _wait_until(lambda: log.exists() and "hold" in log.read_text())
        # 'side' (not idempotent) must be stored finished before the kill: were it caught
        # running, the new daemon would rightly fail it as interrupted.
        _wait_until(lambda: _stream_stored(first, run_id, "side") == "succeeded")
        first.kill()
        go.touch()
        second = DaemonProcess(tmp_path, store=store).start()
        try:
            run = second.wait_for(run_id, {"succeeded", "failed"})
            assert run["status"] == "succeeded"
            events = [
                json.loads(x) for x in second.cli("watch", run_id, "--json").stdout.splitlines()
            ]
        finally:
            second.close()
    finally:
        first.close()
    assert log.read_text().splitlines() == ["first", "hold", "hold", "last"]
    finished = [
        (e["step"], e["attempt"])
        for e in events
        if e["event"] == "step_finished" and e.get("status") == "succeeded"
    ]
    assert sorted(finished) == sorted([("first", 1), ("hold", 2), ("last", 1), ("quick", 1)])
    assert any(e["event"] == "run_resumed" for e in events)


def test_runs_survive_sigkill_non_idempotent_step_is_interrupted(
    tmp_path: Path, store: str | None
) -> None:
    plan, log, go = write_plan(tmp_path, idempotent=False)
    first = DaemonProcess(tmp_path, store=store).start()
    try:
        run_id = first.cli("submit", str(plan)).stdout.strip()
        _wait_until(lambda: log.exists() and "hold" in log.read_text())
        first.kill()
        second = DaemonProcess(tmp_path, store=store).start()
        try:
            run = second.wait_for(run_id, {"succeeded", "failed"})
        finally:
            second.close()
    finally:
        first.close()
        go.touch()  # the killed daemon's step polls for it: let that loop end
    assert run["status"] == "failed"
    main = next(s for s in run["streams"] if s["stream"] == "main")
    assert {s["step"]: s["status"] for s in main["steps"]}["hold"] == "interrupted"
    assert log.read_text().splitlines() == ["first", "hold"]  # nothing ran twice


def test_sigterm_drains_exits_0_and_the_next_daemon_resumes(
    tmp_path: Path, store: str | None
) -> None:
    plan, log, go = write_plan(tmp_path, idempotent=True)
    first = DaemonProcess(tmp_path, store=store, ORCH_SHUTDOWN_GRACE_S="1").start()
    try:
        run_id = first.cli("submit", str(plan)).stdout.strip()
        _wait_until(lambda: log.exists() and "hold" in log.read_text())
        assert first.stop(signal.SIGTERM) == 0
        assert "shutdown_requested" in first.log_text()
        go.touch()
        second = DaemonProcess(tmp_path, store=store).start()
        try:
            run = second.wait_for(run_id, {"succeeded", "failed"})
        finally:
            second.close()
    finally:
        first.close()
    assert run["status"] == "succeeded"
    assert log.read_text().splitlines() == ["first", "hold", "hold", "last"]


def test_second_daemon_refuses_a_live_socket_and_replaces_a_stale_one(tmp_path: Path) -> None:
    first = DaemonProcess(tmp_path).start()
    try:
        assert oct(first.socket.stat().st_mode & 0o777) == "0o600"
        second = DaemonProcess(tmp_path)
        refused = subprocess.run(
            [sys.executable, "-m", "orchestrator", "daemon"],
            capture_output=True,
            text=True,
            timeout=30,
            env=second.env(),
            cwd=ROOT,
        )
        assert refused.returncode == 2 and "already serving" in refused.stderr
        first.kill()  # leaves its socket file behind
        assert first.socket.exists()
        third = DaemonProcess(tmp_path).start()
        third.close()
    finally:
        first.close()


def test_bad_requests_get_errors_and_the_daemon_keeps_serving(
    sqlite_daemon: DaemonProcess,
) -> None:
    daemon = sqlite_daemon

    def exchange(payload: bytes) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(daemon.socket))
            sock.sendall(payload)
            return next(lines(sock))

    assert exchange(b"{not json\n")["error"]["code"] == -32700  # type: ignore[index]
    batch = exchange(b"[1, 2]\n")  # a batch of two invalid requests: two errors
    assert [e["error"]["code"] for e in batch] == [-32600, -32600]  # type: ignore[index]
    unknown = exchange(b'{"jsonrpc": "2.0", "id": 7, "method": "nope"}\n')
    assert unknown["id"] == 7 and unknown["error"]["code"] == -32601  # type: ignore[index]
    wrong = exchange(b'{"jsonrpc": "2.0", "id": 8, "method": "runs.get", "params": {"x": 1}}\n')
    assert wrong["error"]["code"] == -32602  # type: ignore[index]
    assert "run_id" in wrong["error"]["message"]  # type: ignore[index]
    missing = exchange(
        b'{"jsonrpc": "2.0", "id": 9, "method": "runs.get", "params": {"run_id": "nope"}}\n'
    )
    assert missing["error"]["code"] == 1002  # type: ignore[index]

    # A 100 MB line: answered with an error after the first MiB, then the connection closes.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < 100 * (1 << 20):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the daemon closed the connection: that is the point
        reply = next(lines(sock), None)
        assert sent < 100 * (1 << 20)
        if reply is not None:
            assert reply["error"]["code"] == 1004

    # A thousand idle connections, one that says nothing: a real request is still answered.
    idle = []
    try:
        for _ in range(1000):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(daemon.socket))
            idle.append(sock)
        started = time.monotonic()
        assert daemon.call("health")["status"] == "ok"
        assert time.monotonic() - started < 5  # margin: answered while the others idle
    finally:
        for sock in idle:
            sock.close()
    assert daemon.proc is not None and daemon.proc.poll() is None


def test_idle_connection_is_closed(sqlite_daemon: DaemonProcess) -> None:
    daemon = sqlite_daemon
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(daemon.socket))
        assert sock.recv(1) == b""  # closed by the daemon after ORCH_IDLE_TIMEOUT_S=2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as nobody")
def test_peer_with_another_uid_is_refused(tmp_path: Path) -> None:
    # A directory "nobody" may enter, and a socket mode loosened so the kernel lets it
    # connect: the daemon's own uid check must still refuse it.
    public = Path(tempfile.mkdtemp(prefix="orch-peer-"))
    public.chmod(0o755)
    daemon = DaemonProcess(tmp_path, socket_path=public / "ctl.sock").start()
    try:
        os.chmod(daemon.socket, 0o666)
        # The daemon refuses at once and may hang up before the request is even sent.
        client = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            '    s.sendall(b\'{"jsonrpc": "2.0", "id": 1, "method": "health"}\\n\')\n'
            "except BrokenPipeError:\n"
            "    pass\n"
            "print(s.recv(65536).decode())\n"
        )
        # The system interpreter: the test's own may live where "nobody" cannot read.
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        done = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", client, str(daemon.socket)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.strip(), f"the client as nobody failed: {done.stderr}"
        reply = json.loads(done.stdout.splitlines()[0])
        assert reply["error"]["code"] == 1005
        assert "may not use this daemon" in reply["error"]["message"]
        assert "peer_refused" in daemon.log_text()
        assert daemon.call("health")["status"] == "ok"
    finally:
        daemon.close()
        shutil.rmtree(public, ignore_errors=True)


def test_submit_refuses_a_plan_below_its_min_confidence_unless_forced(
    sqlite_daemon: DaemonProcess, tmp_path: Path
) -> None:
    plan = tmp_path / "shaky.yaml"
    plan.write_text("""
version: 1
plan: shaky
min_confidence: 0.8
caps: {light: null}
agents: {a: {class: light, can: [sleep]}}
streams:
  - {id: risky, success_probability: 0.5, team: [a],
     steps: [{id: x, agent: a, action: sleep, with: {seconds: 0}}]}
""")
    refused = sqlite_daemon.cli("submit", str(plan))
    assert refused.returncode == 4 and refused.stdout == ""  # refused, not invalid (2)
    assert "stream risky: predicted success probability 50%" in refused.stderr
    assert "--force" in refused.stderr
    forced = sqlite_daemon.cli("submit", str(plan), "--force", "--wait")
    assert forced.returncode == 0, forced.stderr
    # The check says which history it rests on, scoped as asked.
    own = sqlite_daemon.cli("submit", str(plan), "--history", "plan")
    assert own.returncode == 4 and "1 succeeded, 0 failed; runs of plan shaky" in own.stderr
    none = sqlite_daemon.cli("submit", str(plan), "--history", "none")
    assert none.returncode == 4 and "the plan's 50%, and no recorded runs" in none.stderr
