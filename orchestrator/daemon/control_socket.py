"""The daemon's control socket: JSON-RPC 2.0 over a Unix domain socket, a message per line.

Safety properties, each tested:

- The socket is created with mode 0600, and each connection's peer uid is checked with
  ``SO_PEERCRED``: only root and the daemon's own uid get in; others are told why, logged
  (``peer_refused``) and dropped.
- A stale socket file (nothing listening) is replaced; a live one makes a second daemon refuse
  to start with a clear message.
- Memory is bounded: a line up to ``max_line_bytes`` (1 MiB) is read by any connection; a
  longer one, up to ``max_long_line_bytes`` (32 MiB: a 16 MiB plan even after JSON
  escaping), only while one of ``long_line_slots`` (2) is free, and only ``submit`` may be
  that long (any other request gets ``1004``), so all connections together
  hold at most ``max_connections`` x 1 MiB + 2 x 32 MiB of request lines (a long line
  keeps its slot until it is answered). A line longer still
  gets ``1004`` naming the limit and the connection is closed. A connection that sends no
  complete request within ``idle_timeout_s`` is closed; past ``max_connections`` the
  connection idle the longest is closed to make room, so idle clients cannot lock others out.
- Nothing a client sends can end the daemon: each line is answered by
  :func:`orchestrator.daemon.rpc_dispatch.answer_line` (every JSON-RPC error, batches,
  notifications), and whatever else goes wrong in one connection's task is logged as a bug
  (``rpc_connection_crashed``), answered with ``-32603`` where possible, and ends only that
  connection.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from foundation.errors import UsageError
from orchestrator.daemon.rpc import ErrorCode, RpcError, error_response
from orchestrator.daemon.rpc_dispatch import answer_line, encode

__all__ = ["Connection", "ControlServer", "Handler", "prepare_socket_path"]

_log = structlog.get_logger("orchestrator.control")

#: A client that does not read a message within this long is dropped.
_SEND_TIMEOUT_S = 10.0
#: Closing a connection, probing a socket path, or telling a refused client why.
_CLOSE_S = _PROBE_S = _REFUSAL_S = 1.0


@dataclass(eq=False, slots=True)
class Connection:
    """One client connection; handlers use :meth:`send` for notifications."""

    stream: SocketStream
    peer_uid: int
    peer_pid: int
    last_active: float = field(default_factory=anyio.current_time)
    busy: bool = False  # inside a request or a subscription: never evicted as idle
    _send_lock: anyio.Lock = field(default_factory=anyio.Lock)

    async def send(self, message: dict[str, Any], timeout_s: float = _SEND_TIMEOUT_S) -> None:
        """Write one message; a client that does not read within ``timeout_s`` is dropped."""
        await self.send_many([message], timeout_s)

    async def send_many(
        self, messages: list[dict[str, Any]], timeout_s: float = _SEND_TIMEOUT_S
    ) -> None:
        """Write several messages at once (one line each); same deadline as :meth:`send`."""
        data = b"".join(orjson.dumps(m, default=str) + b"\n" for m in messages)
        await self.send_raw(data, timeout_s)

    async def send_raw(self, data: bytes, timeout_s: float = _SEND_TIMEOUT_S) -> None:
        """Write already encoded lines; same deadline as :meth:`send`."""
        async with self._send_lock:
            with anyio.fail_after(timeout_s):
                await self.stream.send(data)

    async def close(self) -> None:
        with anyio.move_on_after(_CLOSE_S, shield=True), suppress(Exception):
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
    probe.settimeout(_PROBE_S)
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
        max_long_line_bytes: int = 32 * 1024 * 1024,
        long_line_slots: int = 2,
        idle_timeout_s: float = 60.0,
        max_connections: int = 512,
    ) -> None:
        self.path = path
        self.handler = handler
        self.max_line_bytes = max_line_bytes
        self.max_long_line_bytes = max(max_long_line_bytes, max_line_bytes)
        self._long_lines = anyio.CapacityLimiter(long_line_slots)
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
        """The per-connection boundary: nothing raised here reaches the listener's task
        group (which would end the daemon); a bug is logged and ends this connection."""
        try:
            await self._serve_peer(stream)
        except Exception:
            _log.exception("rpc_connection_crashed")
            with anyio.move_on_after(_CLOSE_S, shield=True), suppress(Exception):
                await stream.aclose()

    async def _serve_peer(self, stream: SocketStream) -> None:
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
                    timeout_s=_REFUSAL_S,
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
        except Exception:  # a bug ends this connection only, with a last answer
            _log.exception("rpc_connection_crashed", pid=conn.peer_pid)
            with suppress(Exception):
                await conn.send(
                    error_response(
                        None,
                        RpcError(
                            ErrorCode.INTERNAL_ERROR,
                            "internal error (a bug, logged as rpc_connection_crashed); "
                            "connection closed",
                        ),
                    ),
                    timeout_s=_REFUSAL_S,
                )
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

        async def call(method: str, params: dict[str, Any]) -> Any:
            return await self.handler(method, params, conn)

        while True:
            async with AsyncExitStack() as held:  # a long line keeps its slot until answered
                line = await self._next_line(conn, buffered, held)
                if line is None:
                    return
                passed = self.max_line_bytes if len(line) > self.max_line_bytes else 0
                conn.last_active = anyio.current_time()
                if not line.strip():
                    continue
                conn.busy = True
                try:
                    answer = await answer_line(line, call, passed_limit=passed)
                    del line  # a long line's memory is not held while the answer is sent
                    if answer is not None:
                        await conn.send_raw(answer + b"\n")
                finally:
                    conn.busy = False
                    conn.last_active = anyio.current_time()

    async def _next_line(
        self, conn: Connection, buffered: BufferedByteReceiveStream, held: AsyncExitStack
    ) -> bytes | None:
        """The next request line; None when the connection is to end. A line past
        ``max_line_bytes`` is finished in one of the few long-line slots, entered into
        ``held``; one past ``max_long_line_bytes`` too is answered with 1004 (then None)."""
        try:
            with anyio.fail_after(self.idle_timeout_s):
                return await buffered.receive_until(b"\n", self.max_line_bytes)
        except anyio.DelimiterNotFound:
            pass
        except anyio.IncompleteRead:
            return None  # the client closed mid-line
        try:
            with anyio.fail_after(self.idle_timeout_s):
                await held.enter_async_context(self._long_lines)
                return await buffered.receive_until(b"\n", self.max_long_line_bytes)
        except anyio.IncompleteRead:
            return None
        except anyio.DelimiterNotFound:
            pass
        limit = self.max_long_line_bytes
        error = RpcError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"request line longer than {limit} bytes ({limit // 2**20} MiB); connection "
            "closed (fix: plans are limited to 16 MiB; split larger ones into phases)",
            {"max_line_bytes": limit},
        )
        await conn.send_raw(encode(error_response(None, error)) + b"\n")
        return None
