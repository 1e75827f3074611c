"""The read-version ledger of one agent session (one agent, one step attempt).

It remembers the version of every resource the session has seen (``file.read`` returns one,
and so do the session's own writes), so that a write can be refused as *stale* when the
file changed since, or when the session never read it. The LLM driver holds one per agent
per step attempt and hands it to the tool gate with each call.
"""

from __future__ import annotations

from collections.abc import Mapping

from agents.actions.file import UNREAD

__all__ = ["ReadLedger"]


class ReadLedger:
    """resource (``file:<relative path>``) -> the version this session last saw."""

    __slots__ = ("_versions",)

    def __init__(self) -> None:
        self._versions: dict[str, str] = {}

    def expected(self, resource: str) -> str:
        """The version a write to ``resource`` must find (``unread`` if never seen)."""
        return self._versions.get(resource, UNREAD)

    def learn(self, versions: Mapping[str, str]) -> None:
        """Record versions the session has just seen (read or written)."""
        self._versions.update(versions)

    def __contains__(self, resource: object) -> bool:
        return resource in self._versions

    def __len__(self) -> int:
        return len(self._versions)
