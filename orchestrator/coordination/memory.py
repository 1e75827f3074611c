"""The in-process coordination backend: the embedded default.

Holders and waiters live in this process. Every state change (a new waiter, a release, a
waiter leaving) runs one dispatch pass that grants, in aged-key order, each waiter whose whole
need is free (but a new waiter of a full class, which such a pass could not grant); a granted
waiter is woken through its own event, so a freed slot or lock reaches the next step with no
polling interval.

Waiters are kept per resource class, each list sorted by aged key (the key is fixed at enqueue
time, see :mod:`orchestrator.coordination.base`). A pass merges the lists of classes that have
free slots, so its cost grows with the grants it makes and the lock-blocked waiters it skips,
not with the number of waiters of full classes.

A need can wait with a task (:meth:`InProcessCoordinator.acquire`) or without one
(:meth:`InProcessCoordinator.submit`: the grant is handed to a callback from the pass that
makes it); both stand in the same queues.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from foundation.clock import loop_time
from foundation.errors import LockWaitTimeout
from orchestrator.coordination.base import (
    Blocker,
    CoordinationSnapshot,
    Grant,
    HolderInfo,
    Need,
    OnBlocked,
    OnGranted,
    VersionedValue,
    WaiterInfo,
    aged_key,
)

__all__ = ["InProcessCoordinator"]


@dataclass(slots=True)
class _Waiter:
    """A queued need; also the :class:`~orchestrator.coordination.base.Ticket` of a
    submitted one. Granted through ``event`` (acquire) or ``on_granted`` (submit)."""

    need: Need
    key: float
    seq: int
    enqueued_at: float
    owner: InProcessCoordinator
    event: anyio.Event | None = None
    on_granted: OnGranted | None = None
    grant: Grant | None = None
    on_blocked: OnBlocked | None = None
    #: What ``on_blocked`` was last told.
    reported: tuple[Blocker, ...] = ()

    def sort_key(self) -> tuple[float, int]:
        return (self.key, self.seq)

    def withdraw(self) -> bool:
        if self.grant is not None:
            return False
        self.owner._leave(self)
        return True


class _Granted:
    """The ticket of a need granted within :meth:`InProcessCoordinator.submit`."""

    __slots__ = ()

    def withdraw(self) -> bool:
        return False


_GRANTED = _Granted()


@dataclass(slots=True)
class _Held:
    grant: Grant
    granted_at: float


@dataclass(slots=True)
class _ClassQueue:
    keys: list[tuple[float, int]] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)

    def insert(self, waiter: _Waiter) -> None:
        index = bisect.bisect(self.keys, waiter.sort_key())
        self.keys.insert(index, waiter.sort_key())
        self.waiters.insert(index, waiter)

    def remove(self, waiter: _Waiter) -> None:
        index = bisect.bisect_left(self.keys, waiter.sort_key())
        if index < len(self.waiters) and self.waiters[index] is waiter:
            del self.keys[index]
            del self.waiters[index]


class InProcessCoordinator:
    """Class slots, locks with fencing tokens and shared state inside one process.

    ``aging_s``: waiting this long raises a waiter one priority level. ``starve_after_s``:
    a waiter whose aged key is older than this gets what it needs reserved.
    """

    #: :meth:`release` never suspends, so a caller needs no (shielded) cancel scope around
    #: it; a subclass whose release awaits something must set this to False.
    releases_at_once = True

    def __init__(self, *, aging_s: float = 30.0, starve_after_s: float = 120.0) -> None:
        #: ``lost`` of every grant: an in-process grant has no lease, so it is never set and
        #: never watched (``Grant.leased`` is False); one event for all saves one per grant.
        self._never_lost: anyio.Event | None = None
        self._aging_s = aging_s
        self._starve_after_s = starve_after_s
        self._seq = itertools.count()
        self._queues: dict[str, _ClassQueue] = {}
        self._waiting: dict[str, _Waiter] = {}
        self._held: dict[str, _Held] = {}
        self._lock_owner: dict[str, str] = {}
        self._class_count: Counter[str] = Counter()
        self._class_holders: dict[str, dict[str, None]] = {}  # insertion-ordered sets
        self._caps: dict[str, int | None] = {}
        self._fences: dict[str, int] = {}
        self._state: dict[str, VersionedValue] = {}
        # Waiters told what blocks them, by lock: told again when the lock changes hands.
        self._lock_watchers: dict[str, dict[str, _Waiter]] = {}
        self._changed_locks: set[str] = set()

    def raise_fence_floor(self, floors: Mapping[str, int]) -> None:
        """Issue each lock's next fencing token above ``floors[lock]`` (the highest a
        previous coordinator issued, as its daemon recorded it), so tokens never repeat
        across restarts; a floor below what this one has issued changes nothing."""
        for lock, fence in floors.items():
            self._fences[lock] = max(self._fences.get(lock, 0), int(fence))

    # -- the Protocol -----------------------------------------------------------------------

    async def acquire(
        self, need: Need, *, timeout_s: float | None = None, on_blocked: OnBlocked | None = None
    ) -> Grant:
        now = loop_time()
        grant = self._grant_unqueued(need, now)
        if grant is not None:
            return grant
        event = anyio.Event()
        waiter = self._enqueue(need, now, event=event)
        if waiter.grant is not None:
            return waiter.grant
        self._watch(waiter, on_blocked)
        try:
            with anyio.fail_after(timeout_s):
                await event.wait()
        except TimeoutError:
            if waiter.grant is not None:  # granted in the same instant the deadline hit
                return waiter.grant
            self._leave(waiter)
            raise LockWaitTimeout(
                need.holder,
                [f"class:{need.resource_class}", *need.locks],
                loop_time() - now,
            ) from None
        except BaseException:
            # Cancelled: leave nothing queued or held behind.
            if waiter.grant is not None:
                self._release_now(waiter.grant)
            else:
                self._leave(waiter)
            raise
        assert waiter.grant is not None
        return waiter.grant

    def submit(
        self, need: Need, *, on_granted: OnGranted, on_blocked: OnBlocked | None = None
    ) -> _Waiter | _Granted:
        """Queue ``need`` without a waiting task: ``on_granted`` receives the grant (at once
        if it is free now). ``withdraw()`` on the returned ticket leaves the queue."""
        now = loop_time()
        grant = self._grant_unqueued(need, now)
        if grant is not None:
            on_granted(grant)
            return _GRANTED
        waiter = self._enqueue(need, now, on_granted=on_granted)
        if waiter.grant is None:
            self._watch(waiter, on_blocked)
        return waiter

    async def release(self, grant: Grant) -> None:
        self._release_now(grant)

    async def snapshot(self) -> CoordinationSnapshot:
        now = loop_time()
        holders = tuple(
            HolderInfo(
                holder=held.grant.need.holder,
                resource_class=held.grant.need.resource_class,
                locks=held.grant.need.locks,
                fences=dict(held.grant.fences),
                held_s=now - held.granted_at,
                labels=dict(held.grant.need.labels),
            )
            for held in self._held.values()
        )
        waiters = tuple(
            WaiterInfo(
                holder=w.need.holder,
                resource_class=w.need.resource_class,
                locks=w.need.locks,
                priority=w.need.priority,
                waited_s=now - w.enqueued_at + w.need.age_credit_s,
                labels=dict(w.need.labels),
            )
            for w in sorted(self._waiting.values(), key=_Waiter.sort_key)
        )
        return CoordinationSnapshot(
            holders=holders,
            waiters=waiters,
            class_usage=dict(self._class_count),
            fences=dict(self._fences),
        )

    async def state_get(self, key: str) -> VersionedValue | None:
        return self._state.get(key)

    async def state_cas(self, key: str, value: Any, *, expected_version: int) -> int | None:
        current = self._state.get(key)
        version = current.version if current is not None else 0
        if version != expected_version:
            return None
        self._state[key] = VersionedValue(value=value, version=version + 1)
        return version + 1

    # -- introspection ----------------------------------------------------------------------

    def blockers(self, need: Need) -> tuple[Blocker, ...]:
        """Say what stands between ``need`` and a grant right now."""
        found: list[Blocker] = []
        cap = need.cap
        if cap is not None and self._class_count[need.resource_class] >= cap:
            holders = tuple(itertools.islice(self._class_holders[need.resource_class], cap))
            found.append(Blocker(f"class:{need.resource_class}", holders, f"at cap {cap}"))
        for lock in need.locks:
            owner = self._lock_owner.get(lock)
            if owner is not None:
                found.append(Blocker(lock, (owner,), "locked"))
        if not found:
            found.append(Blocker("queue", (), "older or higher-priority waiters go first"))
        return tuple(found)

    # -- internals --------------------------------------------------------------------------

    def _lost_event(self) -> anyio.Event:
        if self._never_lost is None:
            self._never_lost = anyio.Event()
        return self._never_lost

    def _grant_unqueued(self, need: Need, now: float) -> Grant | None:
        """The grant of an unlimited class without locks, made at once: nothing anyone
        waits for can stand in its way (a starving waiter reserves only slots and locks),
        so it needs no queueing and no dispatch pass. None for any other need."""
        if need.holder in self._held or need.holder in self._waiting:
            raise ValueError(f"holder {need.holder!r} already holds or waits")
        if need.cap is not None or need.locks:
            return None
        self._caps[need.resource_class] = None
        grant = Grant(need=need, fences={}, lost=self._lost_event())
        self._class_count[need.resource_class] += 1
        self._class_holders.setdefault(need.resource_class, {})[need.holder] = None
        self._held[need.holder] = _Held(grant, now)
        return grant

    def _enqueue(
        self,
        need: Need,
        now: float,
        *,
        event: anyio.Event | None = None,
        on_granted: OnGranted | None = None,
    ) -> _Waiter:
        """Queue ``need`` and run a dispatch pass (which may grant it at once) unless its
        class is full."""
        waiter = _Waiter(
            need=need,
            key=aged_key(now, need.priority, need.age_credit_s, self._aging_s),
            seq=next(self._seq),
            enqueued_at=now,
            owner=self,
            event=event,
            on_granted=on_granted,
        )
        self._caps[need.resource_class] = need.cap
        self._waiting[need.holder] = waiter
        self._queues.setdefault(need.resource_class, _ClassQueue()).insert(waiter)
        # A pass can grant only the newcomer (nothing else changed since the last one, and a
        # waiter that starved since can only reserve, never free): none if its class is full.
        if self._free_slots(need.resource_class) >= 1:
            self._dispatch(now)
        return waiter

    def _watch(self, waiter: _Waiter, on_blocked: OnBlocked | None) -> None:
        """Tell ``on_blocked`` what blocks the (not granted) waiter now, and again whenever
        a lock it waits for changes hands."""
        if on_blocked is None:
            return
        need = waiter.need
        waiter.on_blocked = on_blocked
        waiter.reported = self.blockers(need)
        for lock in need.locks:
            self._lock_watchers.setdefault(lock, {})[need.holder] = waiter
        on_blocked(waiter.reported)

    def _free_slots(self, resource_class: str) -> float:
        cap = self._caps.get(resource_class)
        if cap is None:
            return float("inf")
        return cap - self._class_count[resource_class]

    def _unwatch(self, waiter: _Waiter) -> None:
        if waiter.on_blocked is not None:
            for lock in waiter.need.locks:
                self._lock_watchers.get(lock, {}).pop(waiter.need.holder, None)

    def _report_changes(self) -> None:
        """Tell each waiter whose lock changed hands what blocks it now (if that changed)."""
        changed, self._changed_locks = self._changed_locks, set()
        told: set[str] = set()
        for lock in changed:
            for holder, waiter in list(self._lock_watchers.get(lock, {}).items()):
                if holder in told or waiter.grant is not None or waiter.on_blocked is None:
                    continue
                told.add(holder)
                blockers = self.blockers(waiter.need)
                if blockers != waiter.reported:
                    waiter.reported = blockers
                    waiter.on_blocked(blockers)

    def _leave(self, waiter: _Waiter) -> None:
        self._unwatch(waiter)
        if self._waiting.pop(waiter.need.holder, None) is waiter:
            self._queues[waiter.need.resource_class].remove(waiter)
            # A starving waiter may have reserved what others wait for.
            self._dispatch()

    def _release_now(self, grant: Grant) -> None:
        held = self._held.get(grant.need.holder)
        if held is None or held.grant is not grant:
            return  # released twice: harmless
        del self._held[grant.need.holder]
        self._class_count[grant.need.resource_class] -= 1
        self._class_holders[grant.need.resource_class].pop(grant.need.holder, None)
        for lock in grant.need.locks:
            if self._lock_owner.get(lock) == grant.need.holder:
                del self._lock_owner[lock]
                if lock in self._lock_watchers:
                    self._changed_locks.add(lock)
        queue = self._queues.get(grant.need.resource_class)
        if grant.need.locks or grant.need.cap is not None or (queue and queue.waiters):
            self._dispatch()  # else: an unlimited slot without locks frees nothing

    def _grant(self, waiter: _Waiter, now: float) -> None:
        need = waiter.need
        fences: dict[str, int] = {}
        for lock in need.locks:
            fences[lock] = self._fences.get(lock, 0) + 1
            self._fences[lock] = fences[lock]
            self._lock_owner[lock] = need.holder
            if lock in self._lock_watchers:
                self._changed_locks.add(lock)
        self._unwatch(waiter)
        self._class_count[need.resource_class] += 1
        self._class_holders.setdefault(need.resource_class, {})[need.holder] = None
        waiter.grant = Grant(need=need, fences=fences, lost=self._lost_event())
        self._held[need.holder] = _Held(waiter.grant, now)
        del self._waiting[need.holder]
        # Left in its class queue until the pass ends, so the pass can index queues in place.
        if waiter.on_granted is not None:
            waiter.on_granted(waiter.grant)
        elif waiter.event is not None:
            waiter.event.set()

    def _locks_free(self, need: Need, reserved: set[str]) -> bool:
        return all(lock not in self._lock_owner and lock not in reserved for lock in need.locks)

    def _starving(self, now: float) -> list[_Waiter]:
        threshold = now - self._starve_after_s
        found: list[_Waiter] = []
        for queue in self._queues.values():
            for waiter in queue.waiters:
                if waiter.key > threshold:
                    break
                found.append(waiter)
        found.sort(key=_Waiter.sort_key)
        return found

    def _dispatch(self, now: float | None = None) -> None:
        """One dispatch pass; ``now``: the clock as the caller read it (else read here)."""
        granted: list[_Waiter] = []
        try:
            self._dispatch_pass(granted, loop_time() if now is None else now)
        finally:
            for waiter in granted:
                self._queues[waiter.need.resource_class].remove(waiter)
        if self._changed_locks:
            self._report_changes()

    def _dispatch_pass(self, granted: list[_Waiter], now: float) -> None:
        reserved_locks: set[str] = set()
        reserved_slots: Counter[str] = Counter()
        # Starving waiters first: served if they can be, else what they need is reserved.
        for waiter in self._starving(now):
            free = (
                self._free_slots(waiter.need.resource_class)
                - reserved_slots[waiter.need.resource_class]
            )
            if free >= 1 and self._locks_free(waiter.need, reserved_locks):
                self._grant(waiter, now)
                granted.append(waiter)
            else:
                reserved_locks.update(waiter.need.locks)
                reserved_slots[waiter.need.resource_class] += 1
        for waiter in self._merged_candidates(reserved_slots):
            cls = waiter.need.resource_class
            if self._free_slots(cls) - reserved_slots[cls] < 1:
                continue
            if self._locks_free(waiter.need, reserved_locks):
                self._grant(waiter, now)
                granted.append(waiter)

    def _merged_candidates(self, reserved_slots: Counter[str]) -> Iterator[_Waiter]:
        """Yield waiters of classes with free slots in global key order.

        A class that fills up stops contributing at once, so a pass never walks the
        waiters of a full class.
        """
        heap: list[tuple[tuple[float, int], str, int]] = []
        lists: dict[str, list[_Waiter]] = {}
        for cls, queue in self._queues.items():
            if queue.waiters and self._free_slots(cls) - reserved_slots[cls] >= 1:
                lists[cls] = queue.waiters  # not copied: grants leave it only after the pass
                heap.append((queue.waiters[0].sort_key(), cls, 0))
        heapq.heapify(heap)
        while heap:
            _, cls, index = heapq.heappop(heap)
            waiter = lists[cls][index]
            if waiter.grant is None:
                yield waiter
            if self._free_slots(cls) - reserved_slots[cls] < 1:
                continue  # the class filled up: drop the rest of its list
            if index + 1 < len(lists[cls]):
                heapq.heappush(heap, (lists[cls][index + 1].sort_key(), cls, index + 1))
