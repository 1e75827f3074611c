"""The hot path of the Redis backend: the acquire and drop scripts on connections of its own.

An uncontended acquire and release are one script call each, and redis-py's client adds
about as much Python per command as a whole round trip takes on loopback: a blocking pool
behind an ``asyncio.Condition``, a write bounded by ``asyncio.wait_for`` (a task per call),
retry and observability wrappers. :class:`ScriptPool` keeps redis-py's connections (they
own the URL's credentials, TLS, database and RESP parsing) and drives them directly: an idle
list, a semaphore of :data:`POOL_SIZE`, and one ``asyncio.timeout`` around the write and
the read of each call (plus the connect, when the connection is new).

A call that fails in any way but a Redis error reply drops its connection: after a timeout
or a cancellation its reply may still come, so the connection cannot be reused. A script
that Redis no longer knows (``NOSCRIPT``: it restarted, or ``SCRIPT FLUSH``) is loaded again
on the same connection and called again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff

__all__ = ["POOL_SIZE", "ScriptPool"]

#: Connections at most; more concurrent calls wait for one (Redis runs one script at a
#: time, so more would add no throughput).
POOL_SIZE = 16


class ScriptPool:
    """EVALSHA of registered scripts on up to :data:`POOL_SIZE` connections of its own.

    ``reply_timeout_s`` bounds each call (sending and reading); a new connection also gets
    ``connect_timeout_s``. Raises what redis-py raises (``redis.ConnectionError``,
    ``redis.ResponseError``, ...), and ``TimeoutError`` when the call ran out of time.
    """

    def __init__(self, url: str, *, connect_timeout_s: float, reply_timeout_s: float) -> None:
        # Used only to make connections; they never return to it.
        self._factory = redis.asyncio.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,  # each call has its own deadline (no task per write)
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            client_name="orchestrator",
        )
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(POOL_SIZE)
        self._sources: dict[str, str] = {}
        self._closed = False

    def register(self, source: str) -> str:
        """Remember ``source`` (loaded again on ``NOSCRIPT``); return its SHA-1."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._sources[sha] = source
        return sha

    async def evalsha(self, sha: str, key: str, args: Sequence[str | bytes]) -> Any:
        """The reply of the registered script ``sha`` called with one key and ``args``."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else self._connection()
            timeout_s = self._reply_timeout_s
            if not conn.is_connected:
                timeout_s += self._connect_timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    command = _pack(["EVALSHA", sha, "1", key, *args])
                    try:
                        reply = await _call(conn, command)
                    except redis.exceptions.NoScriptError:
                        await _call(conn, _pack(["SCRIPT", "LOAD", self._sources[sha]]))
                        reply = await _call(conn, command)
            except redis.ResponseError:
                self._idle.append(conn)  # an error reply leaves the connection in step
                raise
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
            if self._closed:
                await conn.disconnect(nowait=True)
            else:
                self._idle.append(conn)
            return reply

    def _connection(self) -> AbstractConnection:
        conn: AbstractConnection = self._factory.make_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        return conn

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their call fails or ends)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect(nowait=True)


def _pack(args: Sequence[str | bytes]) -> bytes:
    """A command in RESP (redis-py's packer, general-purpose, costs several times more)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


async def _call(conn: AbstractConnection, command: bytes) -> Any:
    await conn.send_packed_command(command, check_health=False)
    return await conn.read_response(timeout=float("inf"))
