"""The coordination Protocol: class slots, resource locks and shared state.

A step's *need* is one slot of its agent's resource class plus every lock it names. A
backend grants the whole need at once or not at all, so no step holds part of what it needs
while it waits for the rest, and no plan can deadlock on locks.

Waiters are served in order of an *aged key*::

    key = enqueued_at - age_credit_s + priority_level * aging_s

so the highest priority goes first, FIFO within a priority, and a waiter gains one priority
level per ``aging_s`` of waiting: a low-priority step cannot starve. A free slot or lock goes to
the first waiter in key order whose whole need is free (backfilling). A waiter whose key is
older than ``now - starve_after_s`` is *starving*: what it needs is reserved for it, so later
waiters cannot keep taking its locks or slots one at a time.

Every backend (in-process, Redis) implements these semantics; the scheduler sees only this
Protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio

__all__ = [
    "PRIORITY_LEVELS",
    "Blocker",
    "CoordinationSnapshot",
    "Coordinator",
    "Grant",
    "HolderInfo",
    "Need",
    "OnBlocked",
    "OnGranted",
    "QueueingCoordinator",
    "Ticket",
    "VersionedValue",
    "WaiterInfo",
    "aged_key",
]

#: Priority names of a stream and their levels; a lower level is served first.
PRIORITY_LEVELS: Mapping[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def aged_key(enqueued_at: float, priority: int, age_credit_s: float, aging_s: float) -> float:
    """Return the queue key of a waiter: smaller keys are served first (see module doc)."""
    return enqueued_at - age_credit_s + priority * aging_s


@dataclass(frozen=True, slots=True)
class Need:
    """Everything one step must hold before it starts.

    ``holder`` is unique among live holders and waiters (``run/stream/step``); ``cap`` is the
    class's concurrency cap (``None``: unlimited); ``age_credit_s`` is time already spent
    waiting in earlier queue visits, so a step that re-queues after a lock timeout keeps its
    place in the aging order. ``labels`` (run_id, stream, step, agent) are for snapshots.
    """

    holder: str
    resource_class: str
    cap: int | None
    locks: tuple[str, ...] = ()
    priority: int = PRIORITY_LEVELS["medium"]
    age_credit_s: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One fixed global order (sorted names) for every backend that locks one at a time.
        object.__setattr__(self, "locks", tuple(sorted(set(self.locks))))
        if self.cap is not None and self.cap < 1:
            raise ValueError(f"cap of class {self.resource_class!r} must be >= 1 or None")


@dataclass(frozen=True, slots=True)
class Grant:
    """A granted need. ``fences`` maps each lock to its fencing token (strictly increasing
    per resource); ``lost`` is set by the backend if the grant's lease is lost, after which
    the holder must stop touching the resources at once. ``leased`` says whether that can
    happen at all (an in-process grant cannot be lost), so holders watch only when it can."""

    need: Need
    fences: Mapping[str, int]
    lost: anyio.Event
    leased: bool = False


@dataclass(frozen=True, slots=True)
class Blocker:
    """Why a waiter is not granted yet: ``resource`` is a lock name or ``class:<name>``."""

    resource: str
    holders: tuple[str, ...]
    reason: str

    def describe(self) -> str:
        who = ", ".join(self.holders) if self.holders else "nobody"
        return f"{self.resource} ({self.reason}; held by {who})"


#: Called synchronously when a need cannot be granted at the moment it is queued, and again
#: whenever what blocks it changes while it waits (a lock it waits for passes to another
#: holder), so that a waiting step's ``held by`` never goes stale.
OnBlocked = Callable[[tuple[Blocker, ...]], None]


#: Called synchronously, once, from the dispatch pass that grants a submitted need (possibly
#: within :meth:`QueueingCoordinator.submit` itself). It must not raise nor call back into the
#: coordinator; the receiver owns the grant from then on and must release it.
OnGranted = Callable[["Grant"], None]


@dataclass(frozen=True, slots=True)
class HolderInfo:
    holder: str
    resource_class: str
    locks: tuple[str, ...]
    fences: Mapping[str, int]
    held_s: float
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class WaiterInfo:
    holder: str
    resource_class: str
    locks: tuple[str, ...]
    priority: int
    waited_s: float
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CoordinationSnapshot:
    """A consistent view of holders, waiters (in service order) and last fencing tokens."""

    holders: tuple[HolderInfo, ...]
    waiters: tuple[WaiterInfo, ...]
    class_usage: Mapping[str, int]
    fences: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class VersionedValue:
    """A shared-state value and its version (1 on first write, +1 on each write)."""

    value: Any
    version: int


@runtime_checkable
class Coordinator(Protocol):
    """What the scheduler needs from a coordination backend."""

    async def acquire(
        self, need: Need, *, timeout_s: float | None = None, on_blocked: OnBlocked | None = None
    ) -> Grant:
        """Wait until the whole need is granted and return the grant.

        Raises ``LockWaitTimeout`` after ``timeout_s`` without a grant (the waiter has left
        the queue then) and ``CoordinatorUnavailable`` when the backend cannot be reached.
        On cancellation nothing stays queued or held.
        """
        ...

    async def release(self, grant: Grant) -> None:
        """Give back everything the grant holds and wake the next eligible waiters."""
        ...

    async def snapshot(self) -> CoordinationSnapshot:
        """Return holders, waiters and fencing tokens as they are now."""
        ...

    async def state_get(self, key: str) -> VersionedValue | None:
        """Return the shared value under ``key``, or None if it was never written."""
        ...

    async def state_cas(self, key: str, value: Any, *, expected_version: int) -> int | None:
        """Write ``value`` if the key's version is ``expected_version`` (0: absent).

        Return the new version, or None if another writer got there first.
        """
        ...


class Ticket(Protocol):
    """A need queued with :meth:`QueueingCoordinator.submit`."""

    def withdraw(self) -> bool:
        """Leave the queue: True if it was still waiting (it will never be granted), False
        if it was granted already (the grant was handed to ``on_granted``)."""
        ...


@runtime_checkable
class QueueingCoordinator(Coordinator, Protocol):
    """A coordinator that can also queue a need without a task waiting on it (optional:
    a scheduler falls back to one task per waiting :meth:`~Coordinator.acquire` for a
    coordinator without it, so backends need not implement it).

    A run with 10,000 ready steps then holds 10,000 small queue entries instead of 10,000
    suspended tasks; a step's task lives from its grant to its end."""

    def submit(
        self, need: Need, *, on_granted: OnGranted, on_blocked: OnBlocked | None = None
    ) -> Ticket:
        """Queue ``need`` (same order and all-or-nothing rules as :meth:`acquire`, no
        timeout); ``on_granted`` receives the grant, ``on_blocked`` is called as for
        :meth:`acquire`."""
        ...
