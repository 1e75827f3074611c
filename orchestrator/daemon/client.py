"""The control-socket client the CLI uses: one JSON-RPC call per connection.

``call`` sends one request and returns its result; ``subscribe`` yields a run's events (JSON-RPC
notifications ``events.event``) until the daemon answers the request when the run ends.

Connecting waits up to ``connect_wait_s`` (setting ``ORCH_CONNECT_WAIT_S``, default 5 s) for
a daemon that is starting: while the socket is absent or refuses connections, it retries
every 50 ms, so ``orchestrator daemon & orchestrator submit plan.yaml`` works. When the wait
ends, the error says what it found: a daemon pid (``<socket>.pid``) that is alive but not
serving, one that exited, or no daemon at all.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from foundation.errors import DaemonError, DaemonUnavailable
from orchestrator.daemon.readiness import pid_alive, pid_file_of, read_pid

__all__ = ["ControlClient"]

_ids = itertools.count(1)
_MAX_LINE = 64 * 1024 * 1024
#: Between two connection attempts while a daemon starts.
_RETRY_S = 0.05
#: Default bound of connecting and of each answer.
DEFAULT_TIMEOUT_S = 30.0


class ControlClient:
    """Talks to the daemon at ``socket_path``; every wait has a deadline."""

    def __init__(
        self,
        socket_path: Path,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_wait_s: float = 5.0,
    ) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.connect_wait_s = connect_wait_s

    async def _connect(self) -> anyio.abc.SocketStream:
        deadline = anyio.current_time() + self.connect_wait_s
        while True:
            try:
                with anyio.fail_after(self.timeout_s):
                    return await anyio.connect_unix(self.socket_path)
            except TimeoutError:
                raise DaemonUnavailable(
                    str(self.socket_path), f"connecting took longer than {self.timeout_s:g}s"
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise DaemonUnavailable(str(self.socket_path), str(exc)) from None
            if anyio.current_time() >= deadline:
                raise DaemonUnavailable(str(self.socket_path), self._not_serving())
            await anyio.sleep(_RETRY_S)

    def _not_serving(self) -> str:
        """Why nothing answered within ``connect_wait_s``, from the pid file's evidence."""
        pid_file = pid_file_of(self.socket_path)
        pid = read_pid(pid_file)
        waited = f"within {self.connect_wait_s:g}s (ORCH_CONNECT_WAIT_S)"
        if pid is None:
            return f"no daemon is running (no socket and no {pid_file.name} appeared {waited})"
        if pid_alive(pid):
            return (
                f"the daemon (pid {pid}, {pid_file}) is alive but did not serve {waited}; "
                "it may still be opening its store: see its log"
            )
        return f"no daemon is running: the daemon of {pid_file} (pid {pid}) has exited"

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request; return its result or raise DaemonError with the daemon's words."""
        stream = await self._connect()
        async with stream:
            request_id = next(_ids)
            message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            reader = BufferedByteReceiveStream(stream)
            try:
                with anyio.fail_after(self.timeout_s):
                    await stream.send(orjson.dumps(message) + b"\n")
                    while True:
                        reply = orjson.loads(await reader.receive_until(b"\n", _MAX_LINE))
                        if reply.get("id") == request_id or "error" in reply:
                            return _unwrap(reply)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
                raise DaemonUnavailable(
                    str(self.socket_path), f"the daemon closed the connection ({exc!r})"
                ) from None
            except TimeoutError:
                raise DaemonUnavailable(
                    str(self.socket_path), f"no answer to {method} within {self.timeout_s:g}s"
                ) from None

    async def subscribe(
        self, run_id: str, *, from_start: bool = True
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the run's events, from its start or from now, until the run ends."""
        stream = await self._connect()
        async with stream:
            request_id = next(_ids)
            message = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "events.subscribe",
                "params": {"run_id": run_id, "from": "start" if from_start else "now"},
            }
            reader = BufferedByteReceiveStream(stream)
            with anyio.fail_after(self.timeout_s):
                await stream.send(orjson.dumps(message) + b"\n")
            while True:
                try:
                    line = await reader.receive_until(b"\n", _MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
                    raise DaemonUnavailable(
                        str(self.socket_path), f"the daemon closed the stream ({exc!r})"
                    ) from None
                reply = orjson.loads(line)
                if reply.get("method") == "events.event":
                    yield reply["params"]["event"]
                elif reply.get("id") == request_id or "error" in reply:
                    _unwrap(reply)
                    return


def _unwrap(reply: dict[str, Any]) -> Any:
    if "error" in reply:
        error = reply["error"]
        raise DaemonError(
            int(error.get("code", 0)), str(error.get("message", "")), error.get("data")
        )
    return reply.get("result")
