"""The hot path of the Redis backend: acquires and drops as one script, batched, on
connections of its own.

An uncontended acquire and release are one script call each, and redis-py's client adds
about as much Python per command as a whole round trip takes on loopback: a blocking pool
behind an ``asyncio.Condition``, a write bounded by ``asyncio.wait_for`` (a task per call),
retry and observability wrappers. :class:`ScriptPool` keeps redis-py's connections (they
own the URL's credentials, TLS, database and RESP parsing) and drives them directly: an idle
list, at most :data:`POOL_SIZE` of them, and one ``asyncio.timeout`` around each batch (plus
the connect, when the connection is new).

A call is a list of operations for one script (``ops.lua``). Calls made while every
connection is busy queue, and the next caller to find a free connection sends all of them
as **one** script call, up to :data:`MAX_BATCH_OPS` operations each: Redis runs them in
order, as separate calls would run, with one purge and one dispatch pass for all, and the
reply is read and decoded once. Under load (a run's steps releasing and queueing while
earlier calls are in flight) that is a few operations per round trip instead of one; an
uncontended call still goes out at once.

A batch is sent and read shielded from its sender's cancellation (it carries other callers'
calls, a shielded release among them), bounded by its own timeout. A batch that fails in
any way but a Redis error reply drops its connection: after a timeout its replies may still
come, so the connection cannot be reused. An error reply (out of memory, an ACL denial)
fails every call of its script call. A script that Redis no longer knows (``NOSCRIPT``: it
restarted, or ``SCRIPT FLUSH``) is loaded again on the same connection and called again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.backoff import NoBackoff

__all__ = ["MAX_BATCH_OPS", "POOL_SIZE", "ScriptPool"]

#: Connections at most, so batches in flight at most. Redis runs one script at a time, so
#: more would add no throughput; fewer batches in flight make the queued ones larger (with
#: 4, a run of 10,000 steps sent about three times as many batches as with 1, each costing a
#: write, a wake-up of Redis and a reply to read). Two leave one connection free for a call
#: made while a batch is in flight.
POOL_SIZE = 2

#: Operations in one script call at most (a longer queue goes out as several calls in one
#: write), so that no call keeps Redis busy for long.
MAX_BATCH_OPS = 256

#: An operation: its arguments, as the script reads them.
Op = Sequence[str | bytes]


class ScriptPool:
    """Calls of one script on up to :data:`POOL_SIZE` connections of its own.

    The script is called with ``key`` as its one key and ``head`` followed by the arguments
    of every operation of the batch; it replies with JSON text, an array whose element 1
    holds one result per operation, in order. ``on_reply`` sees each decoded reply once,
    before the callers of its operations do. ``reply_timeout_s`` bounds each batch (sending
    and reading); a new connection also gets ``connect_timeout_s``. A call raises what
    redis-py raises (``redis.ConnectionError``, ``redis.ResponseError``, ...),
    ``TimeoutError`` when its batch ran out of time (every operation is idempotent: the
    caller retries), and ``redis.ConnectionError`` once the pool is closed.
    """

    def __init__(
        self,
        url: str,
        *,
        source: str,
        key: str,
        head: Sequence[str],
        on_reply: Callable[[list[Any]], None] | None = None,
        connect_timeout_s: float,
        reply_timeout_s: float,
    ) -> None:
        # Used only to make connections; they never return to it.
        self._factory = redis.asyncio.ConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,  # each batch has its own deadline (no task per write)
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            client_name="orchestrator",
        )
        self._source = source
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self.sha = sha
        # Every command starts alike: EVALSHA, the script, its key and ``head``.
        start = ["EVALSHA", sha, "1", key, *head]
        self._start_n = len(start)
        self._start = _args(start)
        self._on_reply = on_reply
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._idle: list[AbstractConnection] = []
        self._open = 0  # connections idle or sending a batch
        self._queue: list[_Call] = []
        self._freed: list[asyncio.Future[None]] = []
        self._closed = False

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

    async def call(self, ops: Sequence[Op]) -> tuple[list[Any], list[Any]]:
        """Run ``ops`` (in order, possibly with other callers' operations around them);
        return the decoded reply of the script call that carried them and their results."""
        loop = asyncio.get_running_loop()
        call = _Call(len(ops), sum(map(len, ops)), b"".join(map(_args, ops)), loop.create_future())
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

    def _command(self, calls: list[_Call]) -> bytes:
        n = self._start_n + sum(call.n_args for call in calls)
        return b"*%d\r\n%b%b" % (n, self._start, b"".join(call.args for call in calls))

    async def _send_queued(self) -> None:
        """Send every queued call on a free connection, in as few script calls as
        :data:`MAX_BATCH_OPS` allows and in one write; settle their replies."""
        if self._idle:
            conn = self._idle.pop()
        else:
            conn = self._factory.make_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
            self._open += 1
        batch, self._queue = self._queue, []
        chunks: list[list[_Call]] = [[]]
        ops = 0
        for call in batch:
            call.sent = True
            if chunks[-1] and ops + call.n_ops > MAX_BATCH_OPS:
                chunks.append([])
                ops = 0
            chunks[-1].append(call)
            ops += call.n_ops
        timeout_s = self._reply_timeout_s
        if not conn.is_connected:
            timeout_s += self._connect_timeout_s
        try:
            # Shielded: the batch carries other callers' calls (a shielded release among
            # them), so cancelling the caller that happens to send it must not fail them;
            # the batch's own timeout bounds it. The cancellation is delivered after.
            with anyio.CancelScope(shield=True):
                async with asyncio.timeout(timeout_s):
                    commands = [self._command(chunk) for chunk in chunks]
                    await conn.send_packed_command(b"".join(commands), False)
                    again = [
                        (command, chunk)
                        for command, chunk in zip(commands, chunks, strict=True)
                        if not await self._settle(conn, chunk)
                    ]
                    if again:  # NOSCRIPT: load it, then once more
                        await conn.send_packed_command(_command(["SCRIPT", "LOAD", self._source]))
                        await conn.read_response(timeout=_NO_TIMEOUT)
                    for command, chunk in again:
                        await conn.send_packed_command(command, False)
                        await self._settle(conn, chunk, retried=True)
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
        self, conn: AbstractConnection, calls: list[_Call], *, retried: bool = False
    ) -> bool:
        """Read the reply of the script call carrying ``calls`` and hand each its part;
        False if Redis did not know the script."""
        outcome: Exception
        try:
            raw = await conn.read_response(timeout=_NO_TIMEOUT)
        except redis.exceptions.NoScriptError as exc:
            if not retried:
                return False
            outcome = exc
        except redis.ResponseError as exc:  # an error reply leaves the connection in step
            outcome = exc
        else:
            reply = orjson.loads(raw)
            if self._on_reply is not None:
                self._on_reply(reply)
            results = reply[1] if isinstance(reply[1], list) else []  # cjson: [] is {}
            at = 0
            for call in calls:
                if not call.reply.done():  # done: its caller was cancelled
                    call.reply.set_result((reply, results[at : at + call.n_ops]))
                at += call.n_ops
            return True
        for call in calls:
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
    n_ops: int
    n_args: int
    args: bytes  # its operations' arguments in RESP
    reply: asyncio.Future[tuple[list[Any], list[Any]]]
    sent: bool = False


def _discard(reply: asyncio.Future[Any]) -> None:
    """Retrieve a reply nobody waits for (asyncio logs an exception never retrieved)."""
    if not reply.cancelled():
        reply.exception()


#: ``read_response``'s way to say "no timeout of your own" (the batch has one).
_NO_TIMEOUT = float("inf")


def _args(args: Sequence[str | bytes]) -> bytes:
    """Arguments in RESP, without the array's header (redis-py's packer, general-purpose,
    costs several times more)."""
    parts = []
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _command(args: Sequence[str | bytes]) -> bytes:
    """A whole command in RESP."""
    return b"*%d\r\n%b" % (len(args), _args(args))
