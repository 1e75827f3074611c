"""The daemon subprocess and the clients ``benchmarks/daemon.py`` measures it with.

- :class:`DaemonUnderTest` starts ``benchmarks/_daemon_child.py daemon`` (the real daemon with
  its store calls timed) on a private socket and state directory, as ``tests/daemon_process.py``
  does, and reads its CPU time from ``/proc``.
- :meth:`DaemonUnderTest.call` is one JSON-RPC call on a fresh connection, as the CLI makes
  it: connect, send, read the whole answer, parse it. Its time is what a user waits for.
- :class:`Watcher` is an ``events.subscribe`` in a thread that stamps each line with the wall
  clock when it arrives; lines are parsed after the phase, so parsing never delays receiving.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["DaemonUnderTest", "Watcher", "epoch", "summary"]

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "_daemon_child.py"


def epoch(ts: str) -> float:
    """An event's ``ts`` (``2026-11-21T16:15:00.123456Z``) as seconds since the epoch."""
    return datetime.fromisoformat(ts).timestamp()


def summary(samples_s: Sequence[float]) -> dict[str, Any]:
    """Median, p90, p99 (nearest rank) and max of ``samples_s``, in milliseconds."""
    ordered = sorted(samples_s)
    if not ordered:
        return {"n": 0}

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)

    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1e3, 3),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "max_ms": round(ordered[-1] * 1e3, 3),
    }


class DaemonUnderTest:
    """One daemon subprocess on ``tmp``'s socket and state directory."""

    def __init__(self, tmp: Path, *, store: str | None) -> None:
        self.tmp = tmp
        self.socket = tmp / "ctl.sock"
        self.log = tmp / "daemon.log"
        self.timings = tmp / "store-timings.json"
        self.env = {
            **os.environ,
            "ORCH_STATE_DIR": str(tmp / "state"),
            "ORCH_SOCKET": str(self.socket),
            "ORCH_KILL_GRACE_S": "1",
            "ORCH_LOG_FORMAT": "json",
            "ORCH_SHUTDOWN_GRACE_S": "5",
            "BENCH_STORE_TIMINGS": str(self.timings),
        }
        if store:
            self.env["ORCH_STORE"] = store
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60.0) -> float:
        """Start the daemon; return the seconds until it answered ``health``."""
        began = time.perf_counter()
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), "daemon"],
                stdout=log,
                stderr=log,
                env=self.env,
                cwd=ROOT,
            )
        deadline = began + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.call("health")[0]["status"] == "ok":
                    return time.perf_counter() - began
            except OSError:
                pass
            if time.perf_counter() > deadline:
                raise RuntimeError(f"daemon did not come up:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, timeout_s: float = 60.0) -> list[list[Any]]:
        """SIGTERM, wait for a clean exit, return the store-call records it wrote."""
        if self.proc is None:
            return []
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout_s)
        self.proc = None
        if code != 0:
            raise RuntimeError(f"daemon exited {code}:\n{self.log_tail()}")
        return list(orjson.loads(self.timings.read_bytes())) if self.timings.exists() else []

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def sched(self) -> tuple[float, float]:
        """Seconds the daemon's live threads have run on a CPU, and have waited runnable for
        one (other load on the machine), so far: ``/proc/PID/task/*/schedstat``, in ns."""
        cpu = waited = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:
                continue  # the thread ended meanwhile
            cpu += int(fields[0])
            waited += int(fields[1])
        return cpu / 1e9, waited / 1e9

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = 60.0
    ) -> tuple[Any, float, int]:
        """One request on a fresh connection; return (result, seconds, answer bytes).

        The seconds run from connecting to the answer's last byte: decoding it is this
        process's work, and with this process's heap (every result so far) the collections
        that decoding a large answer sets off took up to 25 ms, which no CLI process pays.
        Raises RuntimeError with the daemon's words for an error answer.
        """
        request = orjson.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        )
        chunks: list[bytes] = []
        began = time.perf_counter()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.socket))
            sock.sendall(request + b"\n")
            while True:  # the answer is one line; JSON escapes any newline inside it
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    break
        elapsed = time.perf_counter() - began
        data = b"".join(chunks)
        reply = orjson.loads(data)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"], elapsed, len(data)


class Watcher:
    """``events.subscribe`` (from the start) of one run, read in a thread of its own."""

    def __init__(self, socket_path: Path, run_id: str) -> None:
        self.socket_path = socket_path
        self.run_id = run_id
        self.lines: list[tuple[float, bytes]] = []  # (arrival, wall clock; the raw line)
        self.started = 0
        self.finished = 0
        self.subscribed_at = 0.0
        self.error: OSError | None = None
        self._changed = threading.Condition()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"watch-{run_id}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> int:
        return self.started - self.finished

    def _read(self) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(300)
                sock.connect(str(self.socket_path))
                self.subscribed_at = time.time()
                params = {"run_id": self.run_id, "from": "start"}
                sock.sendall(
                    orjson.dumps(
                        {"jsonrpc": "2.0", "id": 1, "method": "events.subscribe", "params": params}
                    )
                    + b"\n"
                )
                pending = b""
                while not self._done.is_set():
                    chunk = sock.recv(1 << 16)
                    arrived = time.time()
                    if not chunk:
                        break
                    *complete, pending = (pending + chunk).split(b"\n")
                    for line in complete:
                        if b'"method":"events.event"' not in line:
                            self._done.set()  # the answer: the run ended
                            break
                        self.lines.append((arrived, line))
                        if b'"event":"step_started"' in line:
                            self.started += 1
                        elif b'"event":"step_finished"' in line:
                            self.finished += 1
                    with self._changed:
                        self._changed.notify_all()
        except OSError as exc:  # reported by wait_* in the main thread
            self.error = exc
        finally:
            self._done.set()
            with self._changed:
                self._changed.notify_all()

    def wait_started(self, count: int, timeout_s: float) -> float | None:
        """Wait until ``count`` steps have started; return the arrival time of the one that
        made it ``count`` (wall clock), or None on timeout or when the run ended first."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self.started < count and not self._done.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
        if self.error is not None:
            raise RuntimeError(f"watcher failed: {self.error!r}")
        if self.started < count:
            return None
        seen = 0
        for arrived, line in self.lines:
            if b'"event":"step_started"' in line:
                seen += 1
                if seen == count:
                    return arrived
        return None

    def wait_done(self, timeout_s: float) -> bool:
        ended = self._done.wait(timeout_s)
        self._thread.join(timeout=5)
        if self.error is not None:
            raise RuntimeError(f"watcher failed: {self.error!r}")
        return ended

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        """(arrival, event) for every event received so far."""
        return [(t, orjson.loads(line)["params"]["event"]) for t, line in list(self.lines)]
