"""From a batch of events to the rows they change: shared by every backend.

:func:`parse_events` checks each event and serializes it once; :func:`derive` folds the
batch's *new* events (the backend knows which were new) into at most one patch per run,
stream and step, so a backend applies a batch with a fixed number of statements.

The rules, in ``seq`` order:

- ``run_started``: the run is ``running`` (``started_at`` kept if set, ``finished_at``
  cleared); its ``streams`` get rows (``pending``) in plan order.
- ``run_finished``: the run takes the event's ``status`` (checked by :func:`parse_events`)
  and ``finished_at``.
- ``stream_started``: ``running`` with ``started_at``, ``signature`` and ``methodology``;
  ``stream_finished``: its status, reason and ``finished_at``. Stream and step events
  without a ``stream`` (and ``step``) name are stored but derive nothing.
- ``stream_finished`` with status ``succeeded`` or ``failed`` (and no step ``interrupted``
  by a daemon stop: that failure is the crash's, not the stream's) also adds the stream's
  history row (:class:`HistoryPatch`): signature, methodology, status, duration since the
  stream's ``stream_started`` (of this batch, else as stored on the stream's row) and the
  gate's confidence. A stream with no ``signature`` (never started, or events from before
  streams had one) has no history.
- ``step_queued`` / ``step_waiting`` / ``step_started`` / ``step_retrying`` /
  ``step_skipped``: ``queued`` / ``waiting`` / ``running`` / ``retrying`` / ``skipped``;
  ``step_finished``: its status, ``duration_s``, ``reason``, ``exit_code``, ``finished_at``.
  ``step_started`` and a higher ``attempt`` start the row's attempt afresh (times, reason and
  exit code cleared). ``step_retrying`` records its ``message`` as the reason.
- ``step_started`` with ``fences`` raises each lock's stored fence to at least its token
  (:attr:`Derived.fences`; a backend keeps the maximum).

A patch field left None leaves the stored value as it is, except that a step patch with a
``started_at`` or a higher ``attempt`` than the row's replaces every attempt field (times,
duration, reason, exit code) with its own. Each patch carries the seq of its last event; a
backend applies it only over a row with a lower seq (so a patch of seq 0 only creates rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.events import EventRecord, event_line
from orchestrator.store.base import FINISHED_STATUSES
from orchestrator.store.errors import StoreError

__all__ = [
    "HISTORY_STATUSES",
    "Derived",
    "HistoryPatch",
    "ParsedEvent",
    "RunPatch",
    "StepPatch",
    "StreamPatch",
    "as_utc",
    "derive",
    "iso",
    "parse_events",
    "parse_ts",
]

#: The stream outcomes that are history: a verdict on the stream's own work. ``skipped``
#: streams never ran (a dependency failed); ``cancelled`` ones were stopped from outside (a
#: user, a signal, a shutdown), which says nothing of whether their work would succeed, so
#: counting either would pull the stream's success estimate down for another stream's fault.
#: For the same reason a ``failed`` stream with an ``interrupted`` step (the daemon stopped
#: under it) is not history; a run refused by ``min_confidence`` never starts a stream.
HISTORY_STATUSES = frozenset({"succeeded", "failed"})

_STEP_STATUS = {
    "step_queued": "queued",
    "step_waiting": "waiting",
    "step_started": "running",
    "step_retrying": "retrying",
    "step_skipped": "skipped",
}


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    seq: int
    ts: datetime
    event: str
    body: Mapping[str, Any]
    json: str
    #: ``ts`` as :func:`iso` writes it (an event's own ``ts`` when it is written so already).
    ts_text: str


@dataclass(slots=True)
class RunPatch:
    seq: int = 0
    status: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    clear_finished: bool = False


@dataclass(slots=True)
class StreamPatch:
    stream: str
    seq: int
    position: int
    status: str | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    signature: str | None = None
    methodology: str | None = None


@dataclass(slots=True)
class HistoryPatch:
    """A stream's verdict for ``stream_history``. ``started_at`` is set (with ``signature``
    and ``methodology``) when the batch holds the stream's ``stream_started``; else the
    backend takes all three from the stream's stored row."""

    stream: str
    seq: int
    status: str
    finished_at: datetime
    gate_confidence: float | None
    started_at: datetime | None = None
    signature: str | None = None
    methodology: str | None = None
    service_s: float | None = None
    queued_s: float | None = None

    def duration_s(self, started_at: datetime | None) -> float | None:
        """Seconds from ``started_at`` (None: unknown) to the verdict."""
        return None if started_at is None else (self.finished_at - started_at).total_seconds()


@dataclass(slots=True)
class StepPatch:
    stream: str
    step: str
    seq: int
    first_seq: int
    status: str = "queued"
    attempt: int = 0
    agent: str | None = None
    resource_class: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    reason: str | None = None
    exit_code: int | None = None


@dataclass(slots=True)
class Derived:
    """The patches of one batch. ``run`` is None when no run event was in it."""

    run: RunPatch | None = None
    streams: list[StreamPatch] = field(default_factory=list)
    steps: list[StepPatch] = field(default_factory=list)
    history: list[HistoryPatch] = field(default_factory=list)
    #: The highest fencing token per lock among the batch's ``step_started`` events.
    fences: dict[str, int] = field(default_factory=dict)


def parse_ts(value: str) -> datetime:
    """An event's ``ts`` (``...Z`` or with an offset) as an aware datetime; ValueError if not."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is taken as UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.utcoffset() == timedelta(0) else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """``2026-11-21T16:15:00.123456Z``: the one text form of a time, in UTC, so that text
    order is time order. A naive datetime is taken as UTC."""
    if value.tzinfo is not UTC:
        value = as_utc(value)
    # isoformat is C code, five times faster than strftime (a 10,000-step run has 60,000).
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_events(where: str, run_id: str, events: Sequence[Mapping[str, Any]]) -> list[ParsedEvent]:
    """Check and serialize ``events`` (sorted by seq, one per seq); StoreError if malformed."""
    parsed: dict[int, ParsedEvent] = {}
    for index, event in enumerate(events):
        seq, name, ts = event.get("seq"), event.get("event"), event.get("ts")
        problem = ""
        if type(seq) is not int or seq < 1:
            problem = f"'seq' must be a positive integer, not {seq!r}"
        elif not isinstance(name, str) or not name:
            problem = "'event' must be a non-empty string"
        elif event.get("run_id", run_id) != run_id:
            problem = f"it belongs to run {event.get('run_id')!r}"
        elif name == "run_finished" and event.get("status") not in FINISHED_STATUSES:
            problem = f"run_finished needs a status in {', '.join(FINISHED_STATUSES)}"
        if not problem:
            # Parsed from ts even for an EventRecord: fromisoformat (0.2-0.3 us) is cheaper
            # than making a datetime from its stamp (EventRecord.at: 2.3 us).
            try:
                stamp = parse_ts(ts) if isinstance(ts, str) else None
            except ValueError:
                stamp = None
            ts_text = ts if stamp is not None and _is_iso_text(ts) else None
            if stamp is None and isinstance(event, EventRecord):
                stamp = event.at  # its ts redacted (a secret inside a time): its stamp holds
            if stamp is None:
                problem = f"'ts' must be an ISO-8601 time with a zone, not {ts!r}"
        if problem:
            raise StoreError(
                where,
                f"event #{index} of the batch for run {run_id!r} is malformed: {problem}",
                "append events as orchestrator.events.EventLog emits them",
            )
        assert isinstance(seq, int) and isinstance(name, str) and stamp is not None
        if event.get("run_id") == run_id:
            body = event
            text = event_line(event)
        else:
            body = {**event, "run_id": run_id}
            text = event_line(body)
        parsed[seq] = ParsedEvent(seq, stamp, name, body, text, ts_text or iso(stamp))
    return [parsed[seq] for seq in sorted(parsed)]


def _is_iso_text(ts: Any) -> bool:
    """Whether ``ts``, a time that parsed, is written as :func:`iso` writes it
    (``YYYY-MM-DDTHH:MM:SS.ffffffZ``; parsing vouched for the digits)."""
    return (
        isinstance(ts, str)
        and len(ts) == 27
        and ts[4] == ts[7] == "-"
        and ts[10] == "T"
        and ts[13] == ts[16] == ":"
        and ts[19] == "."
        and ts[26] == "Z"
    )


def derive(events: Sequence[ParsedEvent]) -> Derived:
    """Fold new events (in seq order) into one patch per run, stream and step."""
    out = Derived()
    streams: dict[str, StreamPatch] = {}
    steps: dict[tuple[str, str], StepPatch] = {}
    for ev in events:
        name, body = ev.event, ev.body
        sid = body.get("stream")
        if name.startswith("step_"):
            if isinstance(sid, str) and isinstance(body.get("step"), str):
                _fold_step(steps, sid, ev)
            if name == "step_started" and isinstance(fences := body.get("fences"), Mapping):
                for lock, fence in fences.items():
                    if type(fence) is int and fence > out.fences.get(str(lock), 0):
                        out.fences[str(lock)] = fence
        elif (name == "stream_started" or name == "stream_finished") and isinstance(sid, str):
            patch = streams.setdefault(sid, StreamPatch(sid, ev.seq, ev.seq))
            patch.seq = ev.seq
            if name == "stream_started":
                patch.status, patch.started_at = "running", ev.ts
                patch.signature = _text_or_none(body.get("signature"))
                patch.methodology = _text_or_none(body.get("methodology"))
            else:
                patch.status = str(body.get("status") or "finished")
                patch.reason = str(body.get("reason") or "")
                patch.finished_at = ev.ts
                if patch.status in HISTORY_STATUSES and not _interrupted(body):
                    out.history.append(_history(patch, ev))
        elif name == "run_started":
            run = out.run = out.run or RunPatch()
            run.seq, run.status, run.started_at = ev.seq, "running", ev.ts
            run.finished_at, run.clear_finished = None, True
            listed = body.get("streams")
            for position, sid in enumerate(listed if isinstance(listed, list) else ()):
                # Seq 0: creates the row if missing, never overwrites a stream's state.
                streams.setdefault(str(sid), StreamPatch(str(sid), 0, position))
        elif name == "run_finished":
            run = out.run = out.run or RunPatch()
            run.seq, run.status, run.finished_at = ev.seq, str(body["status"]), ev.ts
            run.clear_finished = False
    out.streams = list(streams.values())
    out.steps = list(steps.values())
    return out


def _history(stream: StreamPatch, ev: ParsedEvent) -> HistoryPatch:
    gate = ev.body.get("gate")
    confidence = gate.get("confidence") if isinstance(gate, Mapping) else None
    started = stream.started_at is not None  # this batch started it: take what it said
    return HistoryPatch(
        stream=stream.stream,
        seq=ev.seq,
        status=str(stream.status),
        finished_at=ev.ts,
        gate_confidence=_number_or_none(confidence),
        started_at=stream.started_at,
        signature=stream.signature if started else None,
        methodology=stream.methodology if started else None,
        service_s=_number_or_none(ev.body.get("service_s")),
        queued_s=_number_or_none(ev.body.get("queued_s")),
    )


def _interrupted(body: Mapping[str, Any]) -> bool:
    """Whether a stream failed because the daemon stopped under one of its steps (a step
    ``interrupted``, not safe to re-run): a crash, not a verdict on the stream's method."""
    steps = body.get("steps")
    return isinstance(steps, Mapping) and "interrupted" in steps.values()


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _fold_step(steps: dict[tuple[str, str], StepPatch], stream: str, ev: ParsedEvent) -> None:
    body = ev.body
    key = (stream, str(body["step"]))
    patch = steps.get(key)
    if patch is None:
        patch = steps[key] = StepPatch(key[0], key[1], ev.seq, ev.seq)
    patch.seq = ev.seq
    attempt = body.get("attempt")
    if isinstance(attempt, int) and attempt > patch.attempt:
        if patch.attempt:  # a later attempt within this batch: forget the earlier one
            _clear_attempt(patch, started=True)
        patch.attempt = attempt
    if isinstance(agent := body.get("agent"), str):
        patch.agent = agent
    if isinstance(resource_class := body.get("resource_class"), str):
        patch.resource_class = resource_class
    name = ev.event
    if name == "step_finished":
        patch.status = str(body.get("status") or "finished")
        patch.finished_at = ev.ts
        duration = body.get("duration_s")
        patch.duration_s = float(duration) if isinstance(duration, int | float) else None
        patch.reason = str(body.get("reason") or "")
        code = body.get("exit_code")
        patch.exit_code = code if type(code) is int else None
        return
    patch.status = _STEP_STATUS.get(name, name.removeprefix("step_"))
    if name == "step_started":
        _clear_attempt(patch, started=False)
        patch.started_at = ev.ts
    elif name == "step_retrying":
        patch.reason = str(body.get("message") or body.get("reason") or "")
    elif name == "step_skipped":
        patch.reason = str(body.get("reason") or "")


def _clear_attempt(patch: StepPatch, *, started: bool) -> None:
    if started:
        patch.started_at = None
    patch.finished_at = patch.duration_s = patch.reason = patch.exit_code = None
