"""Per-tool-call locks over the coordinator: the tool gate's :class:`LockService`.

A call's resources (``file:compose.yml``, ``docker:redis``) are one :class:`Need` of the
coordinator's with an unlimited class of its own, so the call is never held back by a class
cap (the step already holds its agent's slot) and is granted all or nothing with a fencing
token per resource, like a step's locks. A wait past ``timeout_s`` gives None ("busy"); the
coordinator has left nothing queued then.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.tools.ports import CallLease
from foundation.errors import LockWaitTimeout
from orchestrator.coordination.base import Coordinator, Grant, Need

__all__ = ["TOOL_CALL_CLASS", "CoordinatorToolLocks"]

#: The (uncapped) resource class of tool-call needs, as snapshots show it.
TOOL_CALL_CLASS = "tool-call"


class CoordinatorToolLocks:
    """:class:`~agents.tools.ports.LockService` over a :class:`Coordinator` (in-process or
    Redis, so that agents of several daemons exclude each other too)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    async def acquire_many(
        self, holder: str, resources: Sequence[str], *, timeout_s: float
    ) -> CallLease | None:
        need = Need(
            holder=holder,
            resource_class=TOOL_CALL_CLASS,
            cap=None,
            locks=tuple(resources),
            labels={"holder": holder, "kind": "tool-call"},
        )
        try:
            grant = await self._coordinator.acquire(need, timeout_s=timeout_s)
        except LockWaitTimeout:
            return None
        return CallLease(fences=dict(grant.fences), handle=grant)

    async def release(self, lease: CallLease) -> None:
        grant = lease.handle
        assert isinstance(grant, Grant), "a lease from another lock service"
        await self._coordinator.release(grant)
