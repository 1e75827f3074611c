"""The hot path of the Redis backend: the acquire and drop scripts on connections of its own.

An uncontended acquire and release are one script call each, and redis-py's client adds
about as much Python per command as a whole round trip takes on loopback: a blocking pool
behind an ``asyncio.Condition``, a write bounded by ``asyncio.wait_for`` (a task per call),
retry and observability wrappers. :class:`ScriptPool` keeps redis-py's connections (they
own the URL's credentials, TLS, database and RESP parsing) and drives them directly: an idle
list, at most :data:`POOL_SIZE` of them, calls queued while all are busy sent together in
one write, and one ``asyncio.timeout`` around each such batch (plus the connect, when the
connection is new).

A batch is sent and read shielded from its sender's cancellation (it carries other callers'
calls, a shielded release among them), bounded by its own timeout. A batch that fails in
any way but a Redis error reply drops its connection: after a timeout its replies may still
come, so the connection cannot be reused. A script
that Redis no longer knows (``NOSCRIPT``: it restarted, or ``SCRIPT FLUSH``) is loaded again
on the same connection and called again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff

__all__ = ["POOL_SIZE", "ScriptPool"]

#: Connections at most, so batches in flight at most. Redis runs one script at a time, so
#: more would add no throughput; fewer batches in flight make the queued ones larger.
POOL_SIZE = 4


class ScriptPool:
    """EVALSHA of registered scripts on up to :data:`POOL_SIZE` connections of its own.

    Calls made while every connection is busy queue, and the next caller to find a free
    connection sends all queued calls in one write and hands each its reply (pipelining):
    a burst of acquires (a plan's steps queueing at its start) costs a few round trips, not
    one per call. ``reply_timeout_s`` bounds each batch (sending and reading); a new
    connection also gets ``connect_timeout_s``. A call raises what redis-py raises
    (``redis.ConnectionError``, ``redis.ResponseError``, ...), ``TimeoutError`` when its batch
    ran out of time (every script is idempotent: the caller retries), and
    ``redis.ConnectionError`` once the pool is closed.
    """

    def __init__(self, url: str, *, connect_timeout_s: float, reply_timeout_s: float) -> None:
        # Used only to make connections; they never return to it.
        self._factory = redis.asyncio.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,  # each batch has its own deadline (no task per write)
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            client_name="orchestrator",
        )
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._idle: list[AbstractConnection] = []
        self._open = 0  # connections idle or sending a batch
        self._queue: list[_Call] = []
        self._freed: list[asyncio.Future[None]] = []
        self._sources: dict[str, str] = {}
        self._closed = False

    def register(self, source: str) -> str:
        """Remember ``source`` (loaded again on ``NOSCRIPT``); return its SHA-1."""
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._sources[sha] = source
        return sha

    async def connect(self) -> None:
        """Open every connection now (raising what connecting raises), so that neither the
        first call nor a burst pays for connecting."""
        while self._open < POOL_SIZE:
            conn: AbstractConnection = self._factory.make_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
            self._open += 1
            try:
                async with asyncio.timeout(self._connect_timeout_s + self._reply_timeout_s):
                    await conn.connect()  # type: ignore[no-untyped-call]  # untyped in redis-py
            except BaseException:
                self._open -= 1
                await conn.disconnect(nowait=True)
                raise
            self._idle.append(conn)

    async def evalsha(self, sha: str, key: str, args: Sequence[str | bytes]) -> Any:
        """The reply of the registered script ``sha`` called with one key and ``args``."""
        loop = asyncio.get_running_loop()
        call = _Call(sha, _pack(["EVALSHA", sha, "1", key, *args]), loop.create_future())
        if self._closed:
            raise redis.ConnectionError("the coordinator is closed")
        self._queue.append(call)
        try:
            while not call.reply.done():
                if call.sent:
                    # Another caller's batch carries it and settles it (or, if we are
                    # cancelled meanwhile, reads its reply into the cancelled future).
                    await call.reply
                elif self._idle or self._open < POOL_SIZE:
                    await self._send_queued()
                else:  # until a connection is free (each waiter has its own future)
                    freed = loop.create_future()
                    self._freed.append(freed)
                    await freed
        except BaseException:
            if not call.sent:  # Redis never sees it
                self._queue.remove(call)
            else:  # its reply comes to nobody
                call.reply.add_done_callback(_discard)
            raise
        return call.reply.result()

    async def _send_queued(self) -> None:
        """Send every queued call on a free connection in one write; settle their replies."""
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = self._factory.make_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
            self._open += 1
        batch, self._queue = self._queue, []
        for call in batch:
            call.sent = True
        timeout_s = self._reply_timeout_s
        if not conn.is_connected:
            timeout_s += self._connect_timeout_s
        try:
            # Shielded: the batch carries other callers' calls (a shielded release among
            # them), so cancelling the caller that happens to send it must not fail them;
            # the batch's own timeout bounds it. The cancellation is delivered after.
            with anyio.CancelScope(shield=True):
                async with asyncio.timeout(timeout_s):
                    await conn.send_packed_command(b"".join(c.command for c in batch), False)
                    again = [call for call in batch if not await self._settle(conn, call)]
                    for sha in {call.sha for call in again}:  # NOSCRIPT: load, once more
                        load = _pack(["SCRIPT", "LOAD", self._sources[sha]])
                        await conn.send_packed_command(load)
                        await conn.read_response(timeout=_NO_TIMEOUT)
                    for call in again:
                        await conn.send_packed_command(call.command, False)
                        await self._settle(conn, call, retried=True)
        except BaseException as exc:
            self._open -= 1
            await conn.disconnect(nowait=True)
            lost: BaseException = (
                exc
                if isinstance(exc, Exception)
                else redis.ConnectionError("the call sending this batch was cancelled")
            )
            for call in batch:
                if not call.reply.done():
                    call.reply.set_exception(lost)
            if not isinstance(exc, Exception):
                raise
        else:
            if self._closed:
                self._open -= 1
                await conn.disconnect(nowait=True)
            else:
                self._idle.append(conn)
        finally:
            freed, self._freed = self._freed, []
            for waiter in freed:
                if not waiter.done():  # not cancelled
                    waiter.set_result(None)

    async def _settle(
        self, conn: AbstractConnection, call: _Call, *, retried: bool = False
    ) -> bool:
        """Read ``call``'s reply into it; False if Redis did not know its script."""
        outcome: Exception
        try:
            reply = await conn.read_response(timeout=_NO_TIMEOUT)
        except redis.exceptions.NoScriptError as exc:
            if not retried:
                return False
            outcome = exc
        except redis.ResponseError as exc:  # an error reply leaves the connection in step
            outcome = exc
        else:
            if not call.reply.done():  # done: its caller was cancelled
                call.reply.set_result(reply)
            return True
        if not call.reply.done():
            call.reply.set_exception(outcome)
        return True

    async def aclose(self) -> None:
        """Close the idle connections (one sending a batch closes when the batch ends)."""
        self._closed = True
        idle, self._idle = self._idle, []
        self._open -= len(idle)
        for conn in idle:
            await conn.disconnect(nowait=True)


@dataclass(eq=False, slots=True)
class _Call:
    sha: str
    command: bytes
    reply: asyncio.Future[Any]
    sent: bool = False


def _discard(reply: asyncio.Future[Any]) -> None:
    """Retrieve a reply nobody waits for (asyncio logs an exception never retrieved)."""
    if not reply.cancelled():
        reply.exception()


#: ``read_response``'s way to say "no timeout of your own" (the batch has one).
_NO_TIMEOUT = float("inf")


def _pack(args: Sequence[str | bytes]) -> bytes:
    """A command in RESP (redis-py's packer, general-purpose, costs several times more)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
