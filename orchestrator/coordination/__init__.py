"""Coordination backends: class slots, resource locks with fencing tokens, shared state.

The scheduler talks to a :class:`Coordinator`; :class:`InProcessCoordinator` is the
embedded default.
"""

from orchestrator.coordination.base import (
    PRIORITY_LEVELS,
    Blocker,
    CoordinationSnapshot,
    Coordinator,
    Grant,
    HolderInfo,
    Need,
    OnBlocked,
    VersionedValue,
    WaiterInfo,
    aged_key,
)
from orchestrator.coordination.memory import InProcessCoordinator

__all__ = [
    "PRIORITY_LEVELS",
    "Blocker",
    "CoordinationSnapshot",
    "Coordinator",
    "Grant",
    "HolderInfo",
    "InProcessCoordinator",
    "Need",
    "OnBlocked",
    "VersionedValue",
    "WaiterInfo",
    "aged_key",
]
