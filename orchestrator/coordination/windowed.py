"""Queueing without a task for a coordinator that only has ``acquire`` (Redis).

:class:`WindowedQueue` gives any :class:`~orchestrator.coordination.base.Coordinator` the
``submit`` of :class:`~orchestrator.coordination.base.QueueingCoordinator`. Per resource
class, at most a window of one run's lock-free needs wait in ``acquire`` at once (the class's
cap, at most :data:`WINDOW`), each in a task of the queue's task group; the rest wait here, in
aged-key order, as entries without a task, and enter ``acquire`` as the window frees. So a
run of 10,000 ready steps under caps of 2 or 3 keeps a handful of waiters at the backend,
not 10,000 (each of which would poll Redis).

A need with locks enters ``acquire`` at once, in its own task: a step waiting for a lock
never holds back the lock-free steps of its class, and the backend's all-or-nothing order
decides between lock holders. A need entering ``acquire`` carries the time it waited here as
``age_credit_s``, so the backend's aging counts it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from dataclasses import dataclass, replace

import anyio
import anyio.abc

from orchestrator.coordination.base import (
    Blocker,
    Coordinator,
    Grant,
    Need,
    OnBlocked,
    OnGranted,
    aged_key,
)

__all__ = ["WINDOW", "WindowedQueue"]

#: The most lock-free needs of one class that wait in ``acquire`` at once.
WINDOW = 64

_QUEUED_HERE = (Blocker("queue", (), "older or higher-priority steps of this run go first"),)


@dataclass(slots=True)
class _Entry:
    """A submitted need; its :class:`~orchestrator.coordination.base.Ticket`."""

    need: Need
    on_granted: OnGranted
    on_blocked: OnBlocked | None
    key: tuple[float, int]
    queued_at: float
    scope: anyio.CancelScope | None = None
    granted: bool = False
    withdrawn: bool = False
    windowed: bool = True

    def __lt__(self, other: _Entry) -> bool:
        return self.key < other.key

    def withdraw(self) -> bool:
        if self.granted:
            return False
        self.withdrawn = True
        if self.scope is not None:
            self.scope.cancel()  # a grant that comes anyway is given back by its task
        return True


class WindowedQueue:
    """``submit`` for ``coordinator`` (see the module doc); its tasks run in ``tg``, which
    must outlive every submitted need."""

    def __init__(
        self,
        coordinator: Coordinator,
        tg: anyio.abc.TaskGroup,
        *,
        aging_s: float,
        release_timeout_s: float,
    ) -> None:
        self._coordinator = coordinator
        self._tg = tg
        self._aging_s = aging_s
        self._seq = itertools.count()
        self._queues: dict[str, list[_Entry]] = {}
        self._active: Counter[str] = Counter()
        self.release_timeout_s = release_timeout_s

    def submit(
        self, need: Need, *, on_granted: OnGranted, on_blocked: OnBlocked | None = None
    ) -> _Entry:
        now = anyio.current_time()
        entry = _Entry(
            need=need,
            on_granted=on_granted,
            on_blocked=on_blocked,
            key=(aged_key(now, need.priority, need.age_credit_s, self._aging_s), next(self._seq)),
            queued_at=now,
            windowed=not need.locks,
        )
        cls = need.resource_class
        if not entry.windowed or self._active[cls] < _window(need):
            self._launch(entry)
        else:
            heapq.heappush(self._queues.setdefault(cls, []), entry)
            if on_blocked is not None:
                on_blocked(_QUEUED_HERE)
        return entry

    def _launch(self, entry: _Entry) -> None:
        if entry.windowed:
            self._active[entry.need.resource_class] += 1
        entry.scope = anyio.CancelScope()
        self._tg.start_soon(self._acquire, entry)

    def _next(self, resource_class: str, window: int) -> None:
        queue = self._queues.get(resource_class)
        while queue and self._active[resource_class] < window:
            entry = heapq.heappop(queue)
            if not entry.withdrawn:
                self._launch(entry)

    async def _acquire(self, entry: _Entry) -> None:
        need = entry.need
        grant: Grant | None = None
        try:
            assert entry.scope is not None
            with entry.scope:
                waited_s = anyio.current_time() - entry.queued_at
                if waited_s > 0:
                    need = replace(need, age_credit_s=need.age_credit_s + waited_s)
                grant = await self._coordinator.acquire(need, on_blocked=entry.on_blocked)
        finally:
            if entry.windowed:
                self._active[need.resource_class] -= 1
                self._next(need.resource_class, _window(need))
        if grant is None:
            return  # withdrawn while it waited: acquire left nothing queued or held
        if entry.withdrawn:
            with anyio.move_on_after(self.release_timeout_s, shield=True):
                await self._coordinator.release(grant)
            return
        entry.granted = True
        entry.on_granted(grant)


def _window(need: Need) -> int:
    return WINDOW if need.cap is None else min(need.cap, WINDOW)
