"""The run's event log: the progress contract that users, tools and tests read.

Each event is built once, as an :class:`EventRecord` (a dict) that starts with ``ts`` (UTC
ISO-8601 with microseconds), ``seq`` (per run, increasing), ``event`` and ``run_id``, with
secrets removed, and is handed to every :class:`EventSink`: the JSON-lines file, the terminal
progress view, the daemon's store and subscribers. Context (``run_id``, ``stream``, ``step``,
``agent``, ``resource_class``, ``locks``) is bound once and carried by every event.

Cost matters here (a run of 10,000 steps emits ~37,000 events), so the record is built by
hand rather than through a structlog processor chain, serialised at most once
(:func:`event_line`, shared by the file and the store) and keeps the time it was stamped
(:attr:`EventRecord.at`; the store parses ``ts``, which is cheaper, and takes the stamp only
where ``ts`` was redacted). The JSON-lines file is
written once per event-loop tick, not once per event.

Event names (past tense): ``run_started``, ``stream_started``, ``step_queued``,
``step_waiting``, ``step_started``, ``step_finished``, ``step_retrying``, ``step_skipped``,
``stream_finished``, ``run_finished``.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from foundation.clock import utc_timestamp, utc_timestamp_parts
from foundation.secrets import Redactor

__all__ = [
    "Durability",
    "EventLog",
    "EventRecord",
    "EventSink",
    "JsonlSink",
    "MemorySink",
    "Redactor",
    "call_soon",
    "event_line",
    "kept",
    "read_events",
    "utc_timestamp",
]

Event = dict[str, Any]


def _diag() -> Any:
    """This module's logger. structlog (with rich, ~90 ms) is imported on first use: the run
    recorder's process reads events back (:meth:`EventRecord.from_line`) and logs nothing."""
    import structlog

    return structlog.get_logger("orchestrator.events")


#: How an event becomes a JSON line, everywhere (file and store): non-string keys allowed.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS


class EventRecord(dict[str, Any]):
    """An event as :class:`EventLog` emits it: a plain dict (sinks may read it, never change
    it) that also keeps its JSON line once made and the time it was stamped."""

    __slots__ = ("_line", "_stamp")

    def __init__(self, items: Mapping[str, Any], stamp: tuple[int, int] | None = None) -> None:
        super().__init__(items)
        self._line: str | None = None
        self._stamp = stamp  # (epoch second, microsecond) that ``ts`` was written from

    @classmethod
    def from_line(cls, line: bytes | str) -> EventRecord:
        """The event read back from its :meth:`line` (kept as it is, not made again)."""
        record = cls(orjson.loads(line))
        record._line = line if isinstance(line, str) else line.decode()
        return record

    def line(self) -> str:
        """The event as one JSON object, serialised on first use (no newline)."""
        if self._line is None:
            # Kept as text: orjson's bytes keep a 4 KiB buffer each, the text is exact.
            self._line = orjson.dumps(self, default=str, option=_JSON_OPTIONS).decode()
        return self._line

    @property
    def at(self) -> datetime | None:
        """``ts`` as an aware datetime, without parsing it (None if not stamped here)."""
        if self._stamp is None:
            return None
        second, micros = self._stamp
        return datetime.fromtimestamp(second, UTC).replace(microsecond=micros)


def kept(event: Mapping[str, Any]) -> Event:
    """``event`` to keep past ``emit``: an :class:`EventRecord` as it is (never changed once
    emitted, and it keeps its line and time), anything else copied."""
    return event if isinstance(event, EventRecord) else dict(event)


def event_line(event: Mapping[str, Any]) -> str:
    """``event`` as one JSON object (no newline); an :class:`EventRecord`'s is made once."""
    if isinstance(event, EventRecord):
        return event.line()
    return orjson.dumps(event, default=str, option=_JSON_OPTIONS).decode()


def call_soon(callback: Callable[[], None]) -> bool:
    """Run ``callback`` on the next tick of the running asyncio loop; False if there is
    none (then the caller does the work at once)."""
    try:
        asyncio.get_running_loop().call_soon(callback)
    except RuntimeError:
        return False
    return True


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
    """Appends one JSON object per line to a file, written once per event-loop tick (at
    once outside an asyncio loop) so that watchers see each event within a tick.

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
        self._flush_pending = False
        self._write()  # creates the file now, or records why it cannot

    def emit(self, event: Mapping[str, Any]) -> None:
        line = (event_line(event) + "\n").encode()
        if self._backlog_bytes + len(line) > self.BACKLOG_BYTES:
            self.dropped += 1
        else:
            self._backlog.append(line)
            self._backlog_bytes += len(line)
        if not self._flush_pending:
            if call_soon(self.flush):
                self._flush_pending = True
            else:
                self._write()

    def flush(self) -> None:
        """Write every waiting line now."""
        self._flush_pending = False
        self._write()

    def _write(self) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab", buffering=0)
            if len(self._backlog) > 1:  # one write for the tick's lines
                self._backlog = deque([b"".join(self._backlog)])
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
                _diag().warning(
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
            _diag().info("event_file_write_resumed", path=str(self.path), dropped=self.dropped)

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


class MemorySink:
    """Keeps events in a list: for tests and for in-process consumers."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Mapping[str, Any]) -> None:
        self.events.append(kept(event))


class _Emitter:
    """What every :class:`EventLog` bound from one root shares: sinks, seq and redactor."""

    __slots__ = ("redactor", "seq", "sinks")

    def __init__(self, sinks: Sequence[EventSink], first_seq: int, redactor: Redactor) -> None:
        self.sinks = list(sinks)
        self.seq = itertools.count(first_seq)
        self.redactor = redactor

    def emit(self, run_id: str, context: Mapping[str, Any], fields: dict[str, Any]) -> int:
        ts, second, micros = utc_timestamp_parts(time.time())
        seq = next(self.seq)
        # Built in place (one dict, not a dict copied into the record).
        record = EventRecord(
            {"ts": ts, "seq": seq, "event": fields.pop("event"), "run_id": run_id},
            (second, micros),
        )
        if context:
            record.update(context)
        record.update(fields)
        redact = self.redactor
        # Walked and copied only if its JSON line (made anyway, for the sinks) shows a secret.
        if redact and redact.found_in_json(record.line()):
            record = EventRecord(redact.value(record), record._stamp)
        for sink in self.sinks:
            sink.emit(record)
        return seq


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
    ) -> None:
        self.run_id = run_id
        self.durability = durability  # None: nothing to wait for (no store)
        self.redactor = redactor if redactor is not None else Redactor()
        self._emitter = _Emitter(sinks, first_seq, self.redactor)
        self._context: dict[str, Any] = {}

    def add_sink(self, sink: EventSink) -> None:
        self._emitter.sinks.append(sink)

    def bind(self, **context: Any) -> EventLog:
        child = object.__new__(type(self))
        child.run_id = self.run_id
        child.durability = self.durability
        child.redactor = self.redactor
        child._emitter = self._emitter
        child._context = {**self._context, **context}
        return child

    def emit(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        self._emitter.emit(self.run_id, self._context, fields)

    def emit_seq(self, event: str, **fields: Any) -> int:
        """Emit ``event``; return its seq (to wait for with :meth:`durable`)."""
        fields["event"] = event
        return self._emitter.emit(self.run_id, self._context, fields)

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
