"""A real ``orchestrator daemon`` subprocess on a private socket, for tests.

It can be started, SIGTERMed, SIGKILLed and started again on the same state, socket and store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess:
    def __init__(
        self,
        tmp: Path,
        *,
        store: str | None = None,
        socket_path: Path | None = None,
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.state = tmp / "state"
        self.socket = socket_path or tmp / "ctl.sock"
        self.log = tmp / "daemon.log"
        self.store = store
        self.extra_env = env
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "ORCH_STATE_DIR": str(self.state),
            "ORCH_SOCKET": str(self.socket),
            "ORCH_KILL_GRACE_S": "1",
            "ORCH_LOG_FORMAT": "json",
            **self.extra_env,
        }
        if self.store:
            env["ORCH_STORE"] = self.store
        return env

    def start(self, timeout_s: float = 30) -> DaemonProcess:
        with self.log.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "daemon", *self.args],
                stdout=log,
                stderr=log,
                env=self.env(),
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_text()}")
            try:
                if self.call("health")["status"] == "ok":
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not come up: {self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 10) -> Any:
        """One JSON-RPC call; returns the result, or the error object as {"error": ...}."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(self.socket))
            sock.sendall(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
                ).encode()
                + b"\n"
            )
            reply = json.loads(_readline(sock))
        return reply["result"] if "result" in reply else {"error": reply["error"]}

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=self.env(),
            cwd=ROOT,
        )

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_for(self, run_id: str, statuses: set[str], timeout_s: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.call("runs.get", {"run_id": run_id})
            if run.get("status") in statuses:
                return dict(run)
            assert time.monotonic() < deadline, f"run stayed {run.get('status')}"
            time.sleep(0.05)


def _readline(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def lines(sock: socket.socket) -> Iterator[dict[str, Any]]:
    buffer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield json.loads(line)
