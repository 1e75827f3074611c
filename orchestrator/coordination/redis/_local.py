"""Grants the Redis backend makes without Redis: a need for a class without a cap and no
locks.

Such a need can never wait: no cap counts its class's holders and no lock can be taken from
it, so Redis would grant it on arrival, and starvation reservations hold slots of capped
classes and locks only. The scheduler's light steps are such needs, thousands per run, so
they make no round trip at all. Their grants are not leased (there is nothing to lose) and
are visible in this process's snapshots, not in other processes' (a class is unlimited in
every process that shares it, as all of a plan's steps of a class share its cap). Their
holder names are checked for uniqueness in this process only; run ids keep them unique
across processes.
"""

from __future__ import annotations

import time

import anyio

from orchestrator.coordination.base import CoordinationSnapshot, Grant, HolderInfo, Need

__all__ = ["LocalGrants", "is_local"]


def is_local(need: Need) -> bool:
    """Whether ``need`` is granted without Redis."""
    return need.cap is None and not need.locks


class LocalGrants:
    """This process's grants made without Redis: holder -> (grant, monotonic grant time)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[Grant, float]] = {}
        #: ``lost`` of every grant: never set (these grants have no lease), so one for all.
        self._never_lost: anyio.Event | None = None

    def __contains__(self, holder: str) -> bool:
        return holder in self._held

    def grant(self, need: Need) -> Grant:
        """Grant ``need`` (the caller checked the holder is new)."""
        if self._never_lost is None:  # made on first use: it needs a running loop
            self._never_lost = anyio.Event()
        grant = Grant(need=need, fences={}, lost=self._never_lost, leased=False)
        self._held[need.holder] = (grant, time.monotonic())
        return grant

    def release(self, grant: Grant) -> bool:
        """Forget ``grant``; False if it is not one of these (or was released already)."""
        entry = self._held.get(grant.need.holder)
        if entry is None or entry[0] is not grant:
            return False
        del self._held[grant.need.holder]
        return True

    def clear(self) -> None:
        self._held.clear()

    def merged(self, snap: CoordinationSnapshot) -> CoordinationSnapshot:
        """``snap`` (from Redis) with these holders added, in grant order."""
        if not self._held:
            return snap
        now = time.monotonic()
        usage = dict(snap.class_usage)
        local = []
        for grant, since in self._held.values():
            need = grant.need
            usage[need.resource_class] = usage.get(need.resource_class, 0) + 1
            local.append(
                HolderInfo(
                    holder=need.holder,
                    resource_class=need.resource_class,
                    locks=(),
                    fences={},
                    held_s=now - since,
                    labels=dict(need.labels),
                )
            )
        holders = sorted((*snap.holders, *local), key=lambda h: (-h.held_s, h.holder))
        return CoordinationSnapshot(
            holders=tuple(holders), waiters=snap.waiters, class_usage=usage, fences=snap.fences
        )
