"""Leases of one process on the Redis backend: its holders, its waiters and their renewal.

One daemon thread per process renews every lease this process holds, and heartbeats every
waiter, in one script call each ``lease_s / 3``. A thread keeps renewing while the event
loop is merely busy; but a loop that is *stalled* (blocked in a synchronous call) must lose
its leases, because the steps it runs cannot react either. So the thread asks the loop to
tick :attr:`LeaseTable.beat` every ``lease_s / 8`` (a callback the loop runs between two
steps of its tasks) and renews only while that tick is fresher than ``lease_s / 2``.

The thread also decides when a holder has lost its lease: every lease ends at the time of
its last successful renewal (measured *before* the request was sent) plus ``lease_s``. When a
renewal could no longer complete before that, the holder is marked lost, ``lock_lost`` is
logged and ``grant.lost`` is set through the event loop, all before the lease ends in Redis.

Neither helps while the whole process is frozen (SIGSTOP): then its step processes would go
on writing after the lease passed to someone else. So the table also tells the step watchdog
(:mod:`agents.processes.containment`) each holder's lease end at grant, at every renewal and at
release; the watchdog, a process of its own, ends the holder's step processes
``LEASE_KILL_MARGIN`` of the lease before the lease can end unless a renewal came first. A
renewal that arrives too late for that (the steps were, or are about to be, ended) makes the
holder lost like a failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
import redis
import structlog
from redis.commands.core import Script

from agents.processes.containment import containment
from orchestrator.coordination.base import Grant, Need
from orchestrator.coordination.redis import _replies as replies

__all__ = ["GONE", "Granted", "Held", "LeaseTable", "LoopCaller", "Renewer", "ServerClock"]

#: A waiter's outcome when its entry vanished from Redis (pruned, or Redis lost its data).
GONE = "gone"


@dataclass(frozen=True, slots=True)
class Granted:
    """A grant made for a waiter: its fencing tokens and when its lease surely ends."""

    fences: dict[str, int]
    deadline: float


@dataclass(slots=True)
class Waiting:
    """An acquire in progress. ``event`` exists only while it waits (most never do)."""

    need: Need
    gid: str
    event: anyio.Event | None = None
    outcome: Granted | str | None = None

    def settle(self, outcome: Granted | str) -> None:
        """On the event loop: record the outcome and wake the acquire if it waits."""
        self.outcome = outcome
        if self.event is not None:
            self.event.set()


@dataclass(slots=True)
class Held:
    grant: Grant
    gid: str
    deadline: float
    lost: bool = False


class ServerClock:
    """Maps Redis ``TIME`` (microseconds) to this process's monotonic clock, erring early.

    The reference pairs a server time with the local time *before* the request that read
    it, so every mapped deadline is no later than the true one.
    """

    def __init__(self) -> None:
        self._ref: tuple[float, float] | None = None

    def note(self, sent: float, server_us: int) -> None:
        self._ref = (sent, server_us / 1e6)

    def deadline(self, granted_us: int, lease_s: float) -> float:
        ref = self._ref
        if ref is None:  # no call answered yet: cannot happen after connecting
            return time.monotonic()
        sent, server_s = ref
        return sent + (granted_us / 1e6 - server_s) + lease_s


class LoopCaller:
    """Runs a callback on the event loop from another thread without waiting for it.

    ``anyio.from_thread.run_sync`` waits for the loop, and a stalled loop must not hold up
    the thread that tells it its leases are lost.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call(self, func: Callable[..., object], *args: Any) -> None:
        # A closed loop raises RuntimeError: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(func, *args)


class LeaseTable:
    """This process's waiters and holders, shared by the event loop and the renewer."""

    def __init__(self, lease_s: float) -> None:
        self.lease_s = lease_s
        self.lock = threading.Lock()
        self.waiting: dict[str, Waiting] = {}
        self.held: dict[str, Held] = {}
        self.beat = time.monotonic()
        self.kick = threading.Event()

    def touch(self) -> None:
        """On the event loop: it is alive."""
        self.beat = time.monotonic()

    def add_waiter(self, need: Need, gid: str) -> Waiting:
        """Register a new waiter; raise ValueError if ``need.holder`` already waits or holds.

        The renewer is not woken: it looks every ``lease_s / 3`` even when idle, in time
        for the first renewal (waking a thread on every acquire would cost more).
        """
        self.touch()  # called on the loop, so it is alive, even after the renewer was idle
        with self.lock:
            if need.holder in self.waiting or need.holder in self.held:
                raise ValueError(f"holder {need.holder!r} already holds or waits")
            waiter = Waiting(need=need, gid=gid)
            self.waiting[need.holder] = waiter
        return waiter

    def knows(self, holder: str) -> bool:
        """Whether ``holder`` waits or holds here."""
        with self.lock:
            return holder in self.waiting or holder in self.held

    def remove_waiter(self, waiter: Waiting) -> None:
        with self.lock:
            if self.waiting.get(waiter.need.holder) is waiter:
                del self.waiting[waiter.need.holder]

    def hold(self, waiter: Waiting, grant: Grant, deadline: float) -> Held:
        held = Held(grant=grant, gid=waiter.gid, deadline=deadline)
        with self.lock:
            if self.waiting.get(waiter.need.holder) is waiter:
                del self.waiting[waiter.need.holder]
            self.held[waiter.need.holder] = held
        # The step watchdog ends the holder's step processes before this lease can end.
        containment().lease_granted(grant.need.holder, deadline, self.lease_s)
        return held

    def pop_held(self, grant: Grant) -> Held | None:
        with self.lock:
            held = self.held.get(grant.need.holder)
            if held is None or held.grant is not grant:
                return None
            del self.held[grant.need.holder]
        containment().lease_released(grant.need.holder)
        return held

    def batch(self) -> tuple[list[Held], list[tuple[str, str]]]:
        """The holders still to renew and the (holder, grant id) of waiters to heartbeat."""
        with self.lock:
            holds = [h for h in self.held.values() if not h.lost]
            waits = [(w.need.holder, w.gid) for w in self.waiting.values() if w.outcome is None]
        return holds, waits

    def drain(self) -> tuple[list[Held], list[Waiting]]:
        """Forget everything (on shutdown) and return what was there."""
        with self.lock:
            holds, waits = list(self.held.values()), list(self.waiting.values())
            self.held.clear()
            self.waiting.clear()
        for held in holds:
            containment().lease_released(held.grant.need.holder)
        return holds, waits


class Renewer:
    """The one renewal thread of a process (see the module docstring).

    ``io_timeout_s`` bounds connecting and each reply of ``client``; a renewal is abandoned,
    and its holders marked lost, when it could not finish ``margin_s`` before their leases
    end.
    """

    def __init__(
        self,
        *,
        table: LeaseTable,
        client: redis.Redis,
        script: Script,
        route: str,
        base: Sequence[Any],
        lease_s: float,
        io_timeout_s: float,
        clock: ServerClock,
        caller: LoopCaller,
        deliver: Callable[[str, str, list[int], int], None],
        gone: Callable[[str, str], None],
        where: str,
    ) -> None:
        self._table = table
        self._client = client
        self._script = script
        self._route = route
        self._base = list(base)
        self._lease_s = lease_s
        self._period_s = lease_s / 3
        self._tick_s = lease_s / 8
        self._retry_s = lease_s / 20
        self._stale_s = lease_s / 2
        self._margin_s = lease_s / 10
        self._budget_s = 2 * io_timeout_s  # connect plus one reply
        self._clock = clock
        self._caller = caller
        self._deliver = deliver
        self._gone = gone
        self._where = where
        self._stop = threading.Event()
        self._failing = False
        self._log = structlog.get_logger()
        self._thread = threading.Thread(target=self._run, name="orch-lease-renewer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        self._stop.set()
        self._table.kick.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _last_chance(self, held: Held) -> float:
        return held.deadline - self._margin_s - self._budget_s

    def _run(self) -> None:
        next_renew = time.monotonic() + self._period_s
        while not self._stop.is_set():
            try:
                next_renew = self._step(next_renew)
            except Exception:
                # A bug here must not end lease-loss detection for the rest of the process.
                self._log.exception("lease_renewer_failed", coordinator=self._where)
                self._stop.wait(self._retry_s)

    def _step(self, next_renew: float) -> float:
        """Renew if due, mark lapsed holders lost, sleep until the next thing to do."""
        now = time.monotonic()
        holds, waits = self._table.batch()
        urgent = any(self._last_chance(h) <= now for h in holds)
        if (holds or waits) and (now >= next_renew or urgent):
            if now - self._table.beat < self._stale_s:
                ok = self._renew(holds, waits)
                next_renew = now + (self._period_s if ok else self._retry_s)
            else:
                next_renew = now + self._retry_s  # stalled loop: let its leases lapse
        now = time.monotonic()
        for held in holds:
            if not held.lost and self._last_chance(held) <= now:
                self._lose(held, "lease could not be renewed in time")
        holds, waits = self._table.batch()
        if not holds and not waits:
            # Idle: look again a period later; what registers meanwhile is renewed then.
            self._table.kick.wait(self._period_s)
            self._table.kick.clear()
            return time.monotonic()
        self._caller.call(self._table.touch)
        wake = min([next_renew, now + self._tick_s, *(self._last_chance(h) for h in holds)])
        self._table.kick.wait(max(0.0, wake - time.monotonic()))
        self._table.kick.clear()
        return next_renew

    def _renew(self, holds: list[Held], waits: list[tuple[str, str]]) -> bool:
        args = [
            *self._base,
            orjson.dumps([[h.grant.need.holder, h.gid] for h in holds]),
            orjson.dumps([list(w) for w in waits]),
        ]
        sent = time.monotonic()
        try:
            reply = orjson.loads(self._script(keys=[self._route], args=args, client=self._client))
        except (redis.RedisError, OSError) as exc:
            if not self._failing:
                self._failing = True
                self._log.warning(
                    "lease_renewal_failed", coordinator=self._where, error=type(exc).__name__
                )
            return False
        if self._failing:
            self._failing = False
            self._log.info("lease_renewal_resumed", coordinator=self._where)
        self._clock.note(sent, int(reply[0]))
        lost = set(replies.as_list(reply[1]))
        for held in holds:
            if held.grant.need.holder in lost:
                self._lose(held, "lease expired in Redis")
            else:
                with self._table.lock:
                    held.deadline = sent + self._lease_s
                holder = held.grant.need.holder
                if not containment().lease_renewed(holder, sent + self._lease_s, self._lease_s):
                    self._lose(held, "lease renewed too late: the step watchdog ended its step")
        for status in replies.as_list(reply[2]):
            if status["s"] == "g":
                self._caller.call(self._deliver, *replies.note(status))
            elif status["s"] == "x":
                self._caller.call(self._gone, status["h"], status["g"])
        for note in replies.notes(reply[3]):
            self._caller.call(self._deliver, *note)
        return True

    def _lose(self, held: Held, reason: str) -> None:
        with self._table.lock:
            # Released meanwhile (a renewal raced the release): nothing was lost.
            if held.lost or self._table.held.get(held.grant.need.holder) is not held:
                return
            held.lost = True
        need = held.grant.need
        labels = {k: v for k, v in need.labels.items() if k in ("run_id", "stream", "step")}
        resources = [(lock, held.grant.fences.get(lock)) for lock in need.locks] or [
            (f"class:{need.resource_class}", None)
        ]
        for resource, fence in resources:
            self._log.warning(
                "lock_lost",
                resource=resource,
                fence=fence,
                holder=need.holder,
                reason=reason,
                coordinator=self._where,
                **labels,
            )
        containment().lease_lost(need.holder)  # its step processes end now, loop or not
        self._caller.call(held.grant.lost.set)
