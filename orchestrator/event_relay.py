"""Forwarding a run's events to an async writer, such as the Redis event stream.

The scheduler emits synchronously; a relay keeps the events in order and writes them from a
task of its own, so a slow or unreachable network never holds a step up. With Redis, every
run's events go to a bounded Redis Stream (``RedisCoordinator.append_events``) that any
process sharing the namespace can follow (``follow_events``), from the start or from now.

A backend with :class:`EventBatchStream` is given everything pending at once (at most
:attr:`EventRelay.BATCH_MAX_EVENTS` a call): one round trip per batch instead of per event,
which in a 10,000-step run (~47,000 events) was most of the time spent relaying. A backend
with only :class:`EventStream` is given one event a call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import anyio
import structlog

from foundation.errors import OrchestratorError
from orchestrator.events import kept

__all__ = ["EventBatchStream", "EventRelay", "EventStream", "relay_for"]

_log = structlog.get_logger("orchestrator.relay")

Writer = Callable[[Mapping[str, Any]], Awaitable[Any]]
BatchWriter = Callable[[Sequence[Mapping[str, Any]]], Awaitable[Any]]


@runtime_checkable
class EventStream(Protocol):
    """An optional capability of a coordination backend: a shared stream of each run's
    events (``RedisCoordinator`` has one; the in-process coordinator does not)."""

    async def append_event(self, run_id: str, event: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class EventBatchStream(Protocol):
    """An event stream that appends a batch of a run's events at once, in order (at least
    once: a batch retried after a lost reply may be appended twice)."""

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> Any: ...


def relay_for(backend: object, run_id: str) -> EventRelay | None:
    """A relay of ``run_id``'s events into ``backend``'s :class:`EventBatchStream` or
    :class:`EventStream`, or None when the backend has neither."""
    if isinstance(backend, EventBatchStream):
        return EventRelay(batch_writer=functools.partial(backend.append_events, run_id))
    if not isinstance(backend, EventStream):
        return None
    return EventRelay(functools.partial(backend.append_event, run_id))


class EventRelay:
    """An event sink that writes each event, in order, with ``writer`` (one event a call)
    or ``batch_writer`` (what is pending, up to :attr:`BATCH_MAX_EVENTS`, a call)."""

    #: The most events one ``batch_writer`` call is given.
    BATCH_MAX_EVENTS = 1000

    def __init__(
        self, writer: Writer | None = None, *, batch_writer: BatchWriter | None = None
    ) -> None:
        if (writer is None) == (batch_writer is None):
            raise TypeError("give an EventRelay one of writer and batch_writer")
        self._writer = writer
        self._batch_writer = batch_writer
        self._pending: list[Mapping[str, Any]] = []
        self._wake = anyio.Event()
        self._closed = False
        self.finished = anyio.Event()
        self.dropped = 0

    def emit(self, event: Mapping[str, Any]) -> None:
        # An EventLog's record is never changed after it is emitted: kept as it is.
        self._pending.append(kept(event))
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
                if self._batch_writer is not None:
                    batch = self._pending[: self.BATCH_MAX_EVENTS]
                    del self._pending[: self.BATCH_MAX_EVENTS]
                    await self._write(batch, self._batch_writer(batch))
                    continue
                assert self._writer is not None
                batch, self._pending = self._pending, []
                for event in batch:
                    await self._write([event], self._writer(event))
            if self._closed:
                return

    async def _write(self, events: Sequence[Mapping[str, Any]], write: Awaitable[Any]) -> None:
        try:
            await write
        except OrchestratorError as exc:
            self.dropped += len(events)
            _log.warning(
                "event_not_relayed",
                run_id=events[0].get("run_id"),
                seq=events[0].get("seq"),
                events=len(events),
                error=str(exc),
            )

    def close(self) -> None:
        """Finish after writing what is pending."""
        self._closed = True
        self._wake.set()
