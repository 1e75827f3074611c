"""A connection flood on a real daemon's control socket (loopback only, bounded).

2,000 connections at once, a quarter each: idle, half a request (no newline), a request
followed by ``shutdown(SHUT_WR)`` (half-closed, never read), and a request whose answer is
never read. While they are open the daemon still answers ``health`` on a new connection
and its run keeps running; once they are closed its descriptor count returns to where it
was. The figures are printed (``pytest -s``) for docs/reliability.md.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess

FLOOD = 2000
PLAN = """
version: 1
plan: socket-flood
caps: {{light: null}}
agents:
  worker: {{class: light, can: [command]}}
streams:
  - id: main
    team: [worker]
    steps:
      - id: hold
        agent: worker
        action: command
        with:
          argv: [sh, -c, "echo started > {started}; while [ ! -f {go} ]; do sleep 0.05; done"]
"""
REQUEST = b'{"jsonrpc":"2.0","id":1,"method":"health"}\n'


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll an outside process's state (its /proc fds): there is no event to wait on."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def enough_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < FLOOD + 200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FLOOD + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FLOOD + 200), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("enough_fds")
def test_connection_flood_leaves_the_daemon_serving_and_its_fds_back(tmp_path: Path) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(started=started, go=go))
    daemon = DaemonProcess(tmp_path, ORCH_IDLE_TIMEOUT_S="60").start()
    flood: list[socket.socket] = []
    try:
        run_id = daemon.cli("submit", str(plan)).stdout.strip()
        _until(started.exists, 60, "the run's step never started")
        assert daemon.proc is not None
        pid = daemon.proc.pid
        fds_before = _fds(pid)

        t0 = time.monotonic()
        for i in range(FLOOD):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(str(daemon.socket))
            kind = i % 4
            if kind == 1:
                sock.sendall(REQUEST[:20])  # half a request, never finished
            elif kind == 2:
                sock.sendall(REQUEST)
                sock.shutdown(socket.SHUT_WR)  # half-closed; the answer is never read
            elif kind == 3:
                sock.sendall(REQUEST)  # the answer is never read
            flood.append(sock)
        opened_s = time.monotonic() - t0

        # Queued behind the whole flood in the listen backlog: answered means all were taken.
        t1 = time.monotonic()
        assert daemon.call("health", timeout_s=60)["status"] == "ok"
        health_s = time.monotonic() - t1
        fds_peak = _fds(pid)
        run = daemon.call("runs.get", {"run_id": run_id})
        assert run["status"] == "running"

        t2 = time.monotonic()
        for sock in flood:
            sock.close()
        flood.clear()
        # Near the start: a few descriptors may come and go with the run (its event file).
        _until(lambda: _fds(pid) <= fds_before + 8, 60, "the daemon kept the flood's fds")
        settled_s = time.monotonic() - t2
        fds_after = _fds(pid)
        print(
            f"\nsocket flood: {FLOOD} connections opened in {opened_s:.2f}s; daemon fds "
            f"before {fds_before}, during {fds_peak} (max_connections 512), after "
            f"{fds_after} (settled in {settled_s:.2f}s); health during the flood answered "
            f"in {health_s:.3f}s"
        )

        assert daemon.call("health")["status"] == "ok"
        go.touch()
        assert daemon.wait_for(run_id, {"succeeded", "failed"})["status"] == "succeeded"
        assert daemon.proc.poll() is None
        assert "rpc_connection_crashed" not in daemon.log_text()
    finally:
        for sock in flood:
            sock.close()
        daemon.close()
