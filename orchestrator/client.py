"""The control-socket client the CLI uses: one JSON-RPC call per connection.

``call`` sends one request and returns its result; ``subscribe`` yields a run's events (JSON-RPC
notifications ``events.event``) until the daemon answers the request when the run ends.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.errors import DaemonError, DaemonUnavailable

__all__ = ["ControlClient"]

_ids = itertools.count(1)
_MAX_LINE = 64 * 1024 * 1024


class ControlClient:
    """Talks to the daemon at ``socket_path``; every wait has a deadline."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    async def _connect(self) -> anyio.abc.SocketStream:
        try:
            with anyio.fail_after(self.timeout_s):
                return await anyio.connect_unix(self.socket_path)
        except (OSError, TimeoutError) as exc:
            raise DaemonUnavailable(str(self.socket_path), str(exc)) from None

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
    ) -> AsyncIterator[dict[str, Any]]:
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
