"""Coordination backends: class slots, resource locks with fencing tokens, shared state.

The scheduler talks to a :class:`Coordinator` (:mod:`.base`, the contract);
:class:`InProcessCoordinator` (:mod:`.memory`) is the embedded default and
:mod:`.redis` shares caps and locks between processes and machines.

Must not import the scheduler, the run store, the daemon, the CLI or anything else of
``orchestrator`` that builds on it; nor ``context_packages`` or ``streams``. Below it only
``foundation`` and ``agents.processes`` (lease deadlines for step processes).
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
