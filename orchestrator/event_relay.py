"""Forwarding a run's events to an async writer, such as the Redis event stream.

The scheduler emits synchronously; a relay keeps the events in order and writes them from a
task of its own, so a slow or unreachable network never holds a step up. With Redis, every
run's events go to a bounded Redis Stream (``RedisCoordinator.append_event``) that any
process sharing the namespace can follow (``follow_events``), from the start or from now.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import anyio
import structlog

from foundation.errors import OrchestratorError

__all__ = ["EventRelay", "EventStream", "relay_for"]

_log = structlog.get_logger("orchestrator.relay")

Writer = Callable[[Mapping[str, Any]], Awaitable[Any]]


@runtime_checkable
class EventStream(Protocol):
    """An optional capability of a coordination backend: a shared stream of each run's
    events (``RedisCoordinator`` has one; the in-process coordinator does not)."""

    async def append_event(self, run_id: str, event: Mapping[str, Any]) -> Any: ...


def relay_for(backend: object, run_id: str) -> EventRelay | None:
    """A relay of ``run_id``'s events into ``backend``'s :class:`EventStream`, or None when
    the backend has none."""
    if not isinstance(backend, EventStream):
        return None
    return EventRelay(functools.partial(backend.append_event, run_id))


class EventRelay:
    """An event sink that writes each event, in order, with ``writer`` (see module doc)."""

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._pending: list[dict[str, Any]] = []
        self._wake = anyio.Event()
        self._closed = False
        self.finished = anyio.Event()
        self.dropped = 0

    def emit(self, event: Mapping[str, Any]) -> None:
        self._pending.append(dict(event))
        self._wake.set()

    async def run(self) -> None:
        """Write events until :meth:`close` (then whatever is left). A write that fails is
        logged and skipped: the run store and the event file keep every event regardless."""
        try:
            await self._relay()
        finally:
            self.finished.set()

    async def _relay(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._pending:
                event = self._pending.pop(0)
                try:
                    await self._writer(event)
                except OrchestratorError as exc:
                    self.dropped += 1
                    _log.warning(
                        "event_not_relayed",
                        run_id=event.get("run_id"),
                        seq=event.get("seq"),
                        error=str(exc),
                    )
            if self._closed:
                return

    def close(self) -> None:
        """Finish after writing what is pending."""
        self._closed = True
        self._wake.set()
