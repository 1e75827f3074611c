"""The daemon's control socket: JSON-RPC 2.0 over a Unix domain socket, a message per line.

Safety properties, each tested:

- The socket is created with mode 0600, and each connection's peer uid is checked with
  ``SO_PEERCRED``: only root and the daemon's own uid get in; others are told why, logged
  (``peer_refused``) and dropped.
- A stale socket file (nothing listening) is replaced; a live one makes a second daemon refuse
  to start with a clear message.
- Memory per connection is bounded: a line longer than ``max_line_bytes`` gets an error and
  the connection is closed; a connection that sends no complete request within
  ``idle_timeout_s`` is closed; past ``max_connections`` the connection idle the longest is
  closed to make room, so idle clients can never lock others out.
- Invalid JSON, a non-object, an unknown method or wrong params get the JSON-RPC error for it
  and the connection stays usable. A handler's bug becomes ``-32603`` and is logged.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import ValidationError

from orchestrator.errors import UsageError
from orchestrator.rpc import (
    ErrorCode,
    RpcError,
    RpcRequest,
    error_response,
    result_response,
)

__all__ = ["Connection", "ControlServer", "Handler", "prepare_socket_path"]

_log = structlog.get_logger("orchestrator.control")


@dataclass(eq=False, slots=True)
class Connection:
    """One client connection; handlers use :meth:`send` for notifications."""

    stream: SocketStream
    peer_uid: int
    peer_pid: int
    last_active: float = field(default_factory=anyio.current_time)
    busy: bool = False  # inside a request or a subscription: never evicted as idle
    _send_lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def send(self, message: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Write one message; a client that does not read within ``timeout_s`` is dropped."""
        await self.send_many([message], timeout_s)

    async def send_many(self, messages: list[dict[str, Any]], timeout_s: float = 10.0) -> None:
        """Write several messages at once (one line each); same deadline as :meth:`send`."""
        data = b"".join(orjson.dumps(m, default=str) + b"\n" for m in messages)
        async with self._send_lock:
            with anyio.fail_after(timeout_s):
                await self.stream.send(data)

    async def close(self) -> None:
        with anyio.move_on_after(1, shield=True), suppress(Exception):
            await self.stream.aclose()


#: A handler answers one request: ``(method, params, connection) -> result``. It raises
#: RpcError for errors the client should see.
Handler = Callable[[str, dict[str, Any], Connection], Awaitable[Any]]


def _peer_credentials(stream: SocketStream) -> tuple[int, int, int]:
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


def prepare_socket_path(path: Path) -> None:
    """Make ``path`` free to bind: remove a stale socket, refuse if a daemon is live there."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            path.unlink(missing_ok=True)  # a crashed daemon's leftover
            _log.info("stale_socket_replaced", socket=str(path))
            return
        raise UsageError(f"cannot use control socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise UsageError(
        f"another daemon is already serving {path}; stop it first or pass --socket "
        "with another path"
    )


class ControlServer:
    """Serves JSON-RPC requests on a Unix socket until cancelled."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        *,
        max_line_bytes: int = 1024 * 1024,
        idle_timeout_s: float = 60.0,
        max_connections: int = 512,
    ) -> None:
        self.path = path
        self.handler = handler
        self.max_line_bytes = max_line_bytes
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.connections: set[Connection] = set()
        self._own_uid = os.geteuid()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        prepare_socket_path(self.path)
        listener = await anyio.create_unix_listener(self.path, mode=0o600)
        _log.info("control_socket_listening", socket=str(self.path))
        try:
            async with listener:
                task_status.started()
                await listener.serve(self._serve_connection)
        finally:
            with suppress(OSError):
                self.path.unlink()

    async def _serve_connection(self, stream: SocketStream) -> None:
        try:
            pid, uid, _ = _peer_credentials(stream)
        except OSError:
            await stream.aclose()
            return
        conn = Connection(stream=stream, peer_uid=uid, peer_pid=pid)
        if uid not in (0, self._own_uid):
            _log.warning("peer_refused", uid=uid, pid=pid, socket=str(self.path))
            with suppress(Exception):
                await conn.send(
                    error_response(
                        None,
                        RpcError(
                            ErrorCode.PERMISSION_DENIED,
                            f"uid {uid} may not use this daemon; "
                            f"run as uid {self._own_uid} or root",
                        ),
                    ),
                    timeout_s=1,
                )
            await conn.close()
            return
        await self._make_room()
        self.connections.add(conn)
        try:
            await self._read_requests(conn)
        except (
            anyio.EndOfStream,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            TimeoutError,
            ConnectionError,
        ):
            pass  # the client went away or stopped reading: nothing to answer
        finally:
            self.connections.discard(conn)
            await conn.close()

    async def _make_room(self) -> None:
        while len(self.connections) >= self.max_connections:
            idle = [c for c in self.connections if not c.busy]
            if not idle:
                return  # every connection is working: admit this one anyway
            oldest = min(idle, key=lambda c: c.last_active)
            self.connections.discard(oldest)
            _log.info("idle_connection_evicted", pid=oldest.peer_pid)
            await oldest.close()

    async def _read_requests(self, conn: Connection) -> None:
        buffered = BufferedByteReceiveStream(conn.stream)
        while True:
            try:
                with anyio.fail_after(self.idle_timeout_s):
                    line = await buffered.receive_until(b"\n", self.max_line_bytes)
            except anyio.DelimiterNotFound:
                await conn.send(
                    error_response(
                        None,
                        RpcError(
                            ErrorCode.REQUEST_TOO_LARGE,
                            f"request line longer than {self.max_line_bytes} bytes; "
                            "connection closed",
                        ),
                    )
                )
                return
            except anyio.IncompleteRead:
                return  # the client closed mid-line
            conn.last_active = anyio.current_time()
            if not line.strip():
                continue
            conn.busy = True
            try:
                await self._answer(conn, line)
            finally:
                conn.busy = False
                conn.last_active = anyio.current_time()

    async def _answer(self, conn: Connection, line: bytes) -> None:
        try:
            raw = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            await conn.send(
                error_response(None, RpcError(ErrorCode.PARSE_ERROR, f"invalid JSON: {exc}"))
            )
            return
        request_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(request_id, int | str | None):
            request_id = None
        try:
            request = RpcRequest.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'request'}: {e['msg']}"
                for e in exc.errors()
            )
            await conn.send(
                error_response(
                    request_id,
                    RpcError(ErrorCode.INVALID_REQUEST, f"not a JSON-RPC 2.0 request: {problems}"),
                )
            )
            return
        try:
            result = await self.handler(request.method, request.params, conn)
        except RpcError as exc:
            await conn.send(error_response(request.id, exc))
            return
        except Exception as exc:  # a handler bug must not take the daemon down
            _log.exception("rpc_handler_crashed", method=request.method)
            await conn.send(
                error_response(
                    request.id,
                    RpcError(
                        ErrorCode.INTERNAL_ERROR, f"internal error in {request.method}: {exc}"
                    ),
                )
            )
            return
        if request.id is not None or result is not None:
            await conn.send(result_response(request.id, result))
