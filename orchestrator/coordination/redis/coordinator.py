"""The Redis coordination backend: class caps, locks and shared state across machines.

Several orchestrator processes that use the same Redis and ``namespace`` share class caps
and locks with the semantics of :mod:`orchestrator.coordination.base`, exactly as
:class:`~orchestrator.coordination.memory.InProcessCoordinator` implements them in one
process: a step's whole need is granted atomically or not at all, waiters are served in
aged-key order with backfilling and starvation reservation, and every lock grant carries a
fencing token that increases per lock.

How (details in :mod:`._scripts` and :mod:`._leases`):

- Each acquire, release and renewal is one Lua script, one round trip; time is Redis's.
  A need for a class without a cap and without locks makes none (:mod:`._local`).
  Acquires and releases go out on the coordinator's own connections without redis-py's
  per-command layers; those made while all are busy go out together, as one script call
  with one dispatch pass for all (:mod:`._hot`).
- Waiters queue in Redis. A grant made for another process's waiter is pushed to that
  process's inbox list, which it reads with a blocking pop: a release reaches the next
  waiter at once (a grant for a waiter of the releasing process comes back in the
  release's own reply). The renewal heartbeat (it dispatches, every lease / 3) and each
  waiter's re-check once a lease are the slow safety net for a lost wake-up.
- Every grant is a lease of ``lease_s``, renewed by one thread per process while the event
  loop is alive. A holder whose lease lapses is told through ``grant.lost`` and a
  ``lock_lost`` log line before the lease ends in Redis. A killed process's grants expire
  within one lease; its dead waiters are pruned within one lease.
- Fencing tokens never fall below Redis's clock in microseconds, so they keep increasing
  after Redis restarts empty; after such a restart no grant is made for one lease period,
  so holders from before the restart have lost their leases first.

While Redis is unreachable nothing is granted: ``acquire`` keeps retrying, with backoff,
for up to ``outage_grace_s`` (default three leases) in a row and then raises
:class:`~foundation.errors.CoordinatorUnavailable`; its ``timeout_s`` applies throughout.
Holders whose leases cannot be renewed meanwhile get ``lost`` set.

The helpers (the renewal thread and the inbox reader) are daemon threads with their own
synchronous connections, not tasks: the coordinator may be entered in one task and left in
another (pytest-asyncio fixtures do that), which no task group allows, and they must keep
working while the event loop is busy. They reach the loop only through
``call_soon_threadsafe``.

This backend runs on anyio's asyncio backend (redis-py's client is asyncio-only). Shared
state, run state and events are JSON, and are lost if Redis loses its data. All processes
sharing a namespace should use the same ``lease_s``; Redis's clock must not jump (leases
are measured with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import orjson
import redis

from foundation.errors import CoordinatorUnavailable, LockWaitTimeout
from orchestrator.coordination.base import Blocker, CoordinationSnapshot, Grant, Need, OnBlocked
from orchestrator.coordination.redis import _replies as replies
from orchestrator.coordination.redis._conn import (
    async_client,
    redact_url,
    sync_client,
    unavailable,
)
from orchestrator.coordination.redis._hot import ScriptPool
from orchestrator.coordination.redis._inbox import STOP_NOTE, Inbox
from orchestrator.coordination.redis._leases import (
    GONE,
    Granted,
    LeaseTable,
    LoopCaller,
    Renewer,
    ServerClock,
    Waiting,
)
from orchestrator.coordination.redis._local import LocalGrants, is_local
from orchestrator.coordination.redis._scripts import OPS, RENEW, SNAPSHOT, STATE_CAS
from orchestrator.coordination.redis._state import RedisSharedState

__all__ = ["RedisCoordinator", "redact_url"]

T = TypeVar("T")

#: A reply's default bound: half a lease, within these (see ``ORCH_REDIS_OP_TIMEOUT_S``).
_OP_TIMEOUT_MIN_S, _OP_TIMEOUT_MAX_S = 0.5, 5.0
#: A blocking read (inbox pop, event stream) waits half a lease, within these.
_BLOCK_MIN_S, _BLOCK_MAX_S = 0.1, 5.0
#: Default outage grace, in leases (see ``ORCH_REDIS_OUTAGE_GRACE_S``).
_OUTAGE_GRACE_LEASES = 3
#: Extra time the helper threads get to stop, beyond a blocking read and one renewal.
_STOP_MARGIN_S = 1.0
#: Bound of each best-effort write while leaving (waking the inbox, deleting it).
_LEAVE_WRITE_S = 1.0

#: The scripts called through redis-py's client; acquires and drops go through the
#: coordinator's ScriptPool (:mod:`._hot`), as operations of ``ops.lua``.
_SCRIPTS = {
    "renew": RENEW,
    "snapshot": SNAPSHOT,
    "state_cas": STATE_CAS,
}


class RedisCoordinator(RedisSharedState):
    """The :class:`~orchestrator.coordination.base.Coordinator` on Redis (module docstring).

    Use it as an async context manager: entering connects (raising CoordinatorUnavailable
    for a wrong or missing password or an unreachable server) and starts the helpers;
    leaving gives back everything this process holds or waits for.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "orch",
        lease_s: float = 10.0,
        aging_s: float = 30.0,
        starve_after_s: float = 120.0,
        connect_timeout_s: float = 5.0,
        op_timeout_s: float | None = None,
        outage_grace_s: float | None = None,
        events_maxlen: int = 10_000,
        retention_s: float = 7 * 86_400.0,
    ) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        super().__init__(
            url,
            namespace=namespace,
            op_timeout_s=op_timeout_s
            or min(_OP_TIMEOUT_MAX_S, max(_OP_TIMEOUT_MIN_S, lease_s / 2)),
            block_s=min(_BLOCK_MAX_S, max(_BLOCK_MIN_S, lease_s / 2)),
            events_maxlen=events_maxlen,
            retention_s=retention_s,
        )
        self._namespace = namespace
        self._lease_s = lease_s
        self._aging_s = aging_s
        self._connect_timeout_s = connect_timeout_s
        self._outage_grace_s = (
            outage_grace_s if outage_grace_s is not None else _OUTAGE_GRACE_LEASES * lease_s
        )
        # A waiter's own re-check is the last resort: the renewal thread heartbeats every
        # waiter each lease / 3 in one script, which purges expired holders, dispatches and
        # reports grants made meanwhile. (A re-check per waiter when a blocking lease would
        # end made thousands of queued steps call Redis every few seconds each.)
        self._recheck_s = lease_s
        self._proc = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._inbox_key = self._prefix + "in:" + self._proc
        # Grant ids tell this acquire's queue entry from an earlier one of the same holder.
        self._gid_prefix = secrets.token_hex(4) + "."
        self._gids = itertools.count()
        # The leading arguments of every script call but state_cas (see _scripts).
        self._base: list[str] = [
            self._prefix,
            self._proc,
            str(_us(lease_s)),
            str(_us(starve_after_s)),
        ]
        self._table = LeaseTable(lease_s)
        self._local = LocalGrants()
        self._clock = ServerClock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._closing = False
        self._scripts: dict[str, Any] = {}
        self._inbox: Inbox | None = None
        self._hot: ScriptPool | None = None

    @property
    def namespace(self) -> str:
        """The key prefix shared by cooperating processes."""
        return self._namespace

    # -- life cycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            caller = LoopCaller(asyncio.get_running_loop())
        except RuntimeError:
            raise CoordinatorUnavailable(
                self.where,
                "the Redis backend needs the asyncio event loop",
                "run the orchestrator on anyio's asyncio backend",
            ) from None
        # Helpers are threads, not tasks: entering and leaving may happen in different tasks.
        stack = contextlib.AsyncExitStack()
        try:
            client = async_client(
                self._url,
                connect_timeout_s=self._connect_timeout_s,
                reply_timeout_s=self._op_timeout_s,
            )
            stack.push_async_callback(_shielded, client.aclose, self._op_timeout_s)
            blocking = async_client(
                self._url, connect_timeout_s=self._connect_timeout_s, reply_timeout_s=None
            )
            stack.push_async_callback(_shielded, blocking.aclose, self._op_timeout_s)
            await self._check(client.ping())
            for name, source in _SCRIPTS.items():
                self._scripts[name] = client.register_script(source)
                await self._check(client.script_load(source))
            hot = ScriptPool(
                self._url,
                source=OPS,
                key=self._route,
                head=self._base,
                on_reply=self._on_ops_reply,
                connect_timeout_s=self._connect_timeout_s,
                reply_timeout_s=self._op_timeout_s,
            )
            stack.push_async_callback(_shielded, hot.aclose, self._op_timeout_s)
            await self._check(client.script_load(OPS))
            await self._check(hot.connect())
            self._hot = hot
            self._client, self._blocking = client, blocking
            self._cas_script = self._scripts["state_cas"]
            io_timeout_s = max(0.05, self._lease_s / 8)
            renew_client = sync_client(self._url, io_timeout_s=io_timeout_s)
            stack.callback(renew_client.close)
            await self._check(anyio.to_thread.run_sync(renew_client.ping))
            await self._refuse_older_layout(renew_client)
            inbox_client = sync_client(self._url, io_timeout_s=self._block_s + io_timeout_s)
            stack.callback(inbox_client.close)
            renewer = Renewer(
                table=self._table,
                client=renew_client,
                script=renew_client.register_script(RENEW),
                route=self._route,
                base=self._base,
                lease_s=self._lease_s,
                io_timeout_s=io_timeout_s,
                clock=self._clock,
                caller=caller,
                deliver=self._deliver,
                gone=self._gone,
                where=self.where,
            )
            inbox = Inbox(
                client=inbox_client,
                key=self._inbox_key,
                block_s=self._block_s,
                caller=caller,
                deliver=self._deliver,
            )
            renewer.start()
            inbox.start()
            self._inbox = inbox
            stop_s = self._block_s + 2 * io_timeout_s + _STOP_MARGIN_S
            stack.push_async_callback(
                _shielded, functools.partial(self._stop_helpers, renewer, inbox, stop_s), stop_s
            )
            stack.push_async_callback(_shielded, self._release_all, self._op_timeout_s)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._log.info("coordinator_connected", namespace=self._namespace, lease_s=self._lease_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._closing = True
        if stack is not None:
            await stack.aclose()
        self._client = self._blocking = None

    async def _refuse_older_layout(self, client: redis.Redis) -> None:
        """Refuse a namespace whose locks are held in the lock layout of versions before
        owner and fence shared one hash field (the ``o`` hash): this version would not see
        those holders, and they would not see its own, so both could hold one lock."""
        older = self._prefix + "o"
        if await self._check(anyio.to_thread.run_sync(client.exists, older)):
            raise CoordinatorUnavailable(
                self.where,
                f"locks of namespace {self._namespace!r} are held by an older orchestrator "
                f"version (key {older!r}, the earlier lock layout)",
                fix=f"stop those processes, or use another namespace (ORCH_NAMESPACE); once "
                f"none runs, delete the key: redis-cli DEL '{older}'",
            )

    async def _check(self, call: Awaitable[T]) -> T:
        """Await a connection-time call, turning every failure into CoordinatorUnavailable."""
        try:
            with anyio.fail_after(self._connect_timeout_s + self._op_timeout_s):
                return await call
        except (redis.RedisError, OSError, TimeoutError) as exc:
            raise unavailable(
                self.where, exc, url=self._url, timeout_s=self._connect_timeout_s
            ) from None

    async def _release_all(self) -> None:
        self._local.clear()
        holds, waits = self._table.drain()
        for waiter in waits:  # an acquire still running sees the coordinator closing
            waiter.settle(GONE)
        entries = [(h.grant.need, h.gid) for h in holds]
        entries += [(w.need, w.gid) for w in waits]
        if not entries:
            return
        try:
            await self._drop("release", entries, grace_s=0.0)
        except CoordinatorUnavailable as exc:
            self._log.warning(
                "coordinator_release_failed",
                reason=exc.reason,
                holders=[need.holder for need, _ in entries],
            )

    async def _stop_helpers(self, renewer: Renewer, inbox: Inbox, join_s: float) -> None:
        renewer.signal_stop()
        inbox.signal_stop()
        client = self._client
        assert client is not None
        # Best effort: without Redis the inbox's pop ends by its own timeout instead.
        with contextlib.suppress(redis.RedisError, OSError), anyio.move_on_after(_LEAVE_WRITE_S):
            await client.rpush(self._inbox_key, STOP_NOTE)
        await anyio.to_thread.run_sync(renewer.join, join_s)
        await anyio.to_thread.run_sync(inbox.join, join_s)
        with contextlib.suppress(redis.RedisError, OSError), anyio.move_on_after(_LEAVE_WRITE_S):
            await client.delete(self._inbox_key)

    # -- the Protocol -----------------------------------------------------------------------

    async def acquire(
        self, need: Need, *, timeout_s: float | None = None, on_blocked: OnBlocked | None = None
    ) -> Grant:
        self._require_open()
        if is_local(need):  # nothing in Redis could make it wait: no round trip
            if need.holder in self._local or self._table.knows(need.holder):
                raise ValueError(f"holder {need.holder!r} already holds or waits")
            return self._local.grant(need)
        if need.holder in self._local:
            raise ValueError(f"holder {need.holder!r} already holds or waits")
        hot = self._hot
        assert hot is not None  # set while open
        waiter = self._table.add_waiter(need, f"{self._gid_prefix}{next(self._gids)}")
        started = time.monotonic()
        # A cancel scope costs more than the rest of an uncontended acquire: only if needed.
        limit = anyio.fail_after(timeout_s) if timeout_s is not None else contextlib.nullcontext()
        reported: tuple[Blocker, ...] | None = None
        try:
            with limit:
                while True:
                    if waiter.outcome == GONE:  # pruned, or Redis lost it: queue again
                        self._require_open()
                        waiter.outcome = None
                    if isinstance(waiter.outcome, Granted):
                        return self._hold(waiter, waiter.outcome)
                    credit_s = need.age_credit_s + time.monotonic() - started
                    op = self._acquire_op(need, waiter.gid, credit_s)
                    sent, (reply, (result,)) = await self._call(
                        functools.partial(hot.call, (op,)), grace_s=self._outage_grace_s
                    )
                    if result[0] == "dup":
                        raise ValueError(f"holder {need.holder!r} already holds or waits")
                    self._clock.note(sent, int(reply[0]))
                    if result[0] == "granted":
                        deadline = sent + self._lease_s
                        fences = replies.fences(need.locks, result[1])
                        return self._hold(waiter, Granted(fences, deadline))
                    if on_blocked is not None:
                        # Told again when what blocks it changes (a new holder).
                        blockers = replies.blockers(result[1])
                        if blockers != reported:
                            reported = blockers
                            on_blocked(blockers)
                    if waiter.outcome is None:
                        waiter.event = event = anyio.Event()
                        with anyio.move_on_after(self._recheck_s):
                            await event.wait()
        except TimeoutError:
            if isinstance(waiter.outcome, Granted):
                return self._hold(waiter, waiter.outcome)
            with anyio.CancelScope(shield=True):
                taken = await self._leave(waiter, "take")
            if taken is not None:
                return self._hold(waiter, taken)
            raise LockWaitTimeout(
                need.holder,
                [f"class:{need.resource_class}", *need.locks],
                time.monotonic() - started,
            ) from None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._leave(waiter, "release")
            raise
        finally:
            self._table.remove_waiter(waiter)

    async def release(self, grant: Grant) -> None:
        if not grant.leased and self._local.release(grant):
            return
        held = self._table.pop_held(grant)
        if held is None:
            return  # released twice, or after the coordinator closed: harmless
        try:
            await self._drop("release", [(grant.need, held.gid)], grace_s=self._lease_s)
        except CoordinatorUnavailable as exc:
            # No longer renewed, the lease runs out in Redis within lease_s.
            self._log.warning("lock_release_failed", holder=grant.need.holder, reason=exc.reason)

    async def snapshot(self) -> CoordinationSnapshot:
        self._require_open()
        script = functools.partial(self._scripts["snapshot"], keys=[self._route], args=self._base)
        _, reply = await self._call(script, grace_s=self._op_timeout_s)
        self._deliver_notes(reply[5])
        return self._local.merged(replies.snapshot(reply))

    # -- internals --------------------------------------------------------------------------

    def _require_open(self) -> redis.asyncio.Redis:
        if self._closing:
            raise CoordinatorUnavailable(
                self.where, "the coordinator is closing", "acquire before leaving its `async with`"
            )
        return super()._require_open()

    async def _drop(
        self, mode: str, entries: list[tuple[Need, str]], *, grace_s: float
    ) -> list[dict[str, Any]]:
        """Give back the grants, or leave the queue, of ``entries`` (need, grant id); return
        each one's result (see drop.lua)."""
        assert self._hot is not None
        ops = [
            (mode, need.holder, gid, need.resource_class, str(len(need.locks)), *need.locks)
            for need, gid in entries
        ]
        _, (_, results) = await self._call(functools.partial(self._hot.call, ops), grace_s=grace_s)
        return results

    async def _leave(self, waiter: Waiting, mode: str) -> Granted | None:
        """Take ``waiter`` out of the queue; with mode "take" keep (and return) a grant made
        meanwhile, with "release" give it back. Best effort: a waiter that cannot be removed
        is pruned within a lease, as its heartbeat stops."""
        try:
            with anyio.move_on_after(self._op_timeout_s):
                results = await self._drop(mode, [(waiter.need, waiter.gid)], grace_s=0)
                if results and results[0].get("k") == "held":
                    held = results[0]
                    deadline = self._clock.deadline(int(held["t"]), self._lease_s)
                    return Granted(replies.fences(waiter.need.locks, held["f"]), deadline)
        except CoordinatorUnavailable as exc:
            self._log.warning(
                "coordinator_leave_failed", holder=waiter.need.holder, reason=exc.reason
            )
        return None

    def _acquire_op(self, need: Need, gid: str, credit_s: float) -> tuple[str | bytes, ...]:
        """An acquire operation of ``ops.lua``."""
        # The record fragment: what the scripts store of the need but never read on the hot
        # path (see the prelude).
        fragment = orjson.dumps(
            {"c": need.resource_class, "l": need.locks, "p": self._proc, "lab": need.labels}
        )
        return (
            "acquire",
            str(len(need.locks)),
            need.holder,
            gid,
            need.resource_class,
            str(-1 if need.cap is None else need.cap),
            str(need.priority),
            str(_us(credit_s)),
            str(_us(self._aging_s)),
            fragment,
            *need.locks,
        )

    def _hold(self, waiter: Waiting, granted: Granted) -> Grant:
        grant = Grant(need=waiter.need, fences=granted.fences, lost=anyio.Event(), leased=True)
        self._table.hold(waiter, grant, granted.deadline)
        if granted.deadline - time.monotonic() < self._lease_s / 2:
            self._table.kick.set()  # renew soon rather than on the thread's schedule
        return grant

    def _deliver(self, holder: str, gid: str, tokens: list[int], granted_us: int) -> None:
        """On the event loop: hand a grant made elsewhere to the waiting acquire."""
        waiter = self._table.waiting.get(holder)
        if waiter is None or waiter.gid != gid or waiter.outcome is not None:
            return  # it left (its leave call gives the grant back) or already knows
        fences = dict(zip(waiter.need.locks, tokens, strict=True))
        waiter.settle(Granted(fences, self._clock.deadline(granted_us, self._lease_s)))

    def _gone(self, holder: str, gid: str) -> None:
        """On the event loop: the waiter's entry vanished from Redis; it queues again."""
        waiter = self._table.waiting.get(holder)
        if waiter is not None and waiter.gid == gid and waiter.outcome is None:
            waiter.settle(GONE)

    def _on_ops_reply(self, reply: list[Any]) -> None:
        """Each reply of ``ops.lua``, once: hand on the grants it made for this process's
        waiters."""
        self._deliver_notes(reply[2])

    def _deliver_notes(self, raw: Any) -> None:
        for note in replies.notes(raw):
            self._deliver(*note)


async def _shielded(call: Callable[[], Awaitable[object]], timeout_s: float) -> None:
    """Clean-up step of the exit stack: runs even while cancelled, but not for ever."""
    with anyio.move_on_after(timeout_s, shield=True):
        await call()


def _us(seconds: float) -> int:
    return round(seconds * 1e6)
