"""What the tool gate needs from the rest of the daemon, as small Protocols.

``agents/`` may not import ``orchestrator/``: the daemon hands the gate a :class:`LockService`
(an adapter over its coordinator, :mod:`orchestrator.tool_locks`) and a :class:`ToolEvents`
sink (its run's :class:`~orchestrator.events.EventLog` is one as it is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CallLease", "LockService", "ToolEvents"]


@dataclass(frozen=True, slots=True)
class CallLease:
    """Locks held for one tool call: each resource's fencing token, and the backend's own
    handle (opaque to the gate) to release them."""

    fences: Mapping[str, int]
    handle: Any = None


class LockService(Protocol):
    """All-or-nothing locks with fencing tokens and a bounded wait."""

    async def acquire_many(
        self, holder: str, resources: Sequence[str], *, timeout_s: float
    ) -> CallLease | None:
        """Hold every resource, or none: None when they are still busy after ``timeout_s``
        (nothing stays held or queued then). ``holder`` is unique among live holders."""
        ...

    async def release(self, lease: CallLease) -> None:
        """Give back everything ``lease`` holds."""
        ...


class ToolEvents(Protocol):
    """Where ``tool_called`` events go (the run's event log)."""

    def emit(self, event: str, **fields: Any) -> None: ...
