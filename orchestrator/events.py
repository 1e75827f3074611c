"""The run's event log: the progress contract that users, tools and tests read.

Events are built by a structlog logger of their own (not the diagnostic log) whose chain adds
``ts`` (UTC ISO-8601 with microseconds), ``seq`` (per run, increasing) and removes secrets,
then hands the event dict to every :class:`EventSink`: the JSON-lines file, the terminal
progress view, the daemon's store and subscribers. Context (``run_id``, ``stream``, ``step``,
``agent``, ``resource_class``, ``locks``) is bound once and carried by every event.

Event names (past tense): ``run_started``, ``stream_started``, ``step_queued``,
``step_waiting``, ``step_started``, ``step_finished``, ``step_retrying``, ``step_skipped``,
``stream_finished``, ``run_finished``.
"""

from __future__ import annotations

import errno
import itertools
from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import structlog

from foundation.clock import utc_timestamp
from foundation.secrets import Redactor

__all__ = [
    "Durability",
    "EventLog",
    "EventSink",
    "JsonlSink",
    "MemorySink",
    "Redactor",
    "read_events",
    "utc_timestamp",
]

Event = dict[str, Any]

_diag = structlog.get_logger("orchestrator.events")


class EventSink(Protocol):
    """Receives each event once, in order; must be quick and must not raise."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


class Durability(Protocol):
    """Knows when an event is durable (stored); a write-ahead barrier waits on it."""

    async def wait(self, seq: int) -> None:
        """Return once the event with ``seq`` (and every earlier one) is durable; raise
        :class:`~orchestrator.store.StoreUnavailable` if that does not happen in time."""
        ...


class JsonlSink:
    """Appends one JSON object per line to a file, written through per event so watchers
    see it.

    A write that fails (a full disk: ENOSPC, EDQUOT; an I/O error) never raises: the lines
    not written wait, in order, in memory (up to :attr:`BACKLOG_BYTES`; the run store keeps
    every event anyway) and are written before the next one once the disk takes them again.
    A line is never torn for good: what a partial write left out is written first. The
    failure and the recovery are logged once each (``event_file_write_failed`` /
    ``event_file_write_resumed``); :attr:`error` holds the failure while it lasts.
    """

    BACKLOG_BYTES = 64 * 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: OSError | None = None
        self.dropped = 0  # events beyond the backlog limit, never written to the file
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._file: IO[bytes] | None = None
        self._write()  # creates the file now, or records why it cannot

    def emit(self, event: Mapping[str, Any]) -> None:
        line = orjson.dumps(event, default=str) + b"\n"
        if self._backlog_bytes + len(line) > self.BACKLOG_BYTES:
            self.dropped += 1
        else:
            self._backlog.append(line)
            self._backlog_bytes += len(line)
        self._write()

    def _write(self) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab", buffering=0)
            while self._backlog:
                chunk = self._backlog[0]
                written = self._file.write(chunk) or 0
                self._backlog_bytes -= written
                if written < len(chunk):
                    self._backlog[0] = chunk[written:]
                else:
                    self._backlog.popleft()
        except OSError as exc:
            if self.error is None:
                _diag.warning(
                    "event_file_write_failed",
                    path=str(self.path),
                    error=exc.strerror or str(exc),
                    waiting_events=len(self._backlog),
                    fix="free space on its file system; writing resumes by itself"
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "check the path and its permissions",
                )
            self.error = exc
            return
        if self.error is not None:
            self.error = None
            _diag.info("event_file_write_resumed", path=str(self.path), dropped=self.dropped)

    def close(self) -> None:
        self._write()
        if self._file is not None:
            self._file.close()


class MemorySink:
    """Keeps events in a list: for tests and for in-process consumers."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))


class _FanOut:
    """The structlog "logger" at the end of the chain: passes the dict to every sink."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self.sinks = list(sinks)

    def msg(self, **event: Any) -> int:
        for sink in self.sinks:
            sink.emit(event)
        return int(event["seq"])


class EventLog:
    """Emits a run's events; :meth:`bind` returns a child carrying more context."""

    def __init__(
        self,
        run_id: str,
        sinks: Sequence[EventSink],
        *,
        redactor: Redactor | None = None,
        first_seq: int = 1,
        durability: Durability | None = None,
        _logger: Any = None,
    ) -> None:
        self.run_id = run_id
        self.durability = durability  # None: nothing to wait for (no store)
        self.redactor = redactor if redactor is not None else Redactor()
        if _logger is None:
            self._fanout = _FanOut(sinks)
            seq = itertools.count(first_seq)
            redact = self.redactor

            def stamp(_: Any, __: str, event: MutableMapping[str, Any]) -> Event:
                ordered: Event = {
                    "ts": utc_timestamp(),
                    "seq": next(seq),
                    "event": event.pop("event"),
                    "run_id": event.pop("run_id"),
                }
                ordered.update(event)
                return redact.value(ordered) if redact else ordered

            _logger = structlog.wrap_logger(
                self._fanout,
                processors=[stamp],
                wrapper_class=structlog.BoundLogger,
                context_class=dict,
                cache_logger_on_first_use=True,
            ).bind(run_id=run_id)
        self._logger = _logger

    def add_sink(self, sink: EventSink) -> None:
        self._fanout.sinks.append(sink)

    def bind(self, **context: Any) -> EventLog:
        child = EventLog(self.run_id, (), _logger=self._logger.bind(**context))
        child._fanout = self._fanout
        child.durability = self.durability
        child.redactor = self.redactor
        return child

    def emit(self, event: str, **fields: Any) -> None:
        self._logger.msg(event, **fields)

    def emit_seq(self, event: str, **fields: Any) -> int:
        """Emit ``event``; return its seq (to wait for with :meth:`durable`)."""
        return int(self._logger.msg(event, **fields))

    async def durable(self, seq: int) -> None:
        """Wait until the event ``seq`` is durable (at once when there is no store)."""
        if self.durability is not None:
            await self.durability.wait(seq)


def read_events(path: Path) -> list[Event]:
    """Read a JSON-lines event file; a torn last line (a crash mid-write) is ignored."""
    events: list[Event] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                events.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                if handle.read(1):  # not the last line: the file is damaged
                    raise ValueError(f"{path}:{number}: not a JSON object") from None
    return events
