"""A run's timeline as an SVG Gantt chart, derived from its stored events only.

One lane per stream; per step attempt a grey bar for the time it waited (queued until
started) and a bar coloured by its final status for the time it ran (running: blue, never
red). A lock hold is outlined in black; an undo or rollback step is hatched and labelled, and
a stream's rollback is a shaded band from ``rollback_started`` to its end. The critical path
(see :func:`critical_path`) is outlined in orange. Everything that comes from a plan or an
event is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

STATUS_COLOURS: Mapping[str, str] = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "timed_out": "#ef6c00",
    "cancelled": "#757575",
    "skipped": "#9e9e9e",
    "running": "#1565c0",
}
WAIT_COLOUR = "#cfd8dc"
ROLLBACK_COLOUR = "#ffe0b2"
CRITICAL_COLOUR = "#ff6f00"
LANE_H = 28
LABEL_W = 160
CHART_W = 800


@dataclass
class Bar:
    """One attempt of one step: when it was queued, started and finished (seconds from
    the run's first event; ``None`` when not reached yet)."""

    stream: str
    step: str
    attempt: int
    queued: float | None = None
    started: float | None = None
    finished: float | None = None
    status: str = "running"
    locks: tuple[str, ...] = ()
    phase: str = ""  # "undo" or "rollback" for a step that reverts, else ""
    #: Holders (``stream/step``) of what this attempt waited for, from ``step_waiting``.
    blockers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.stream}/{self.step}"


def _seconds(ts: Any) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class Timeline:
    """Everything the chart draws: lanes, bars, rollback bands and the span (seconds)."""

    streams: list[str]
    bars: list[Bar]
    span: float
    rollbacks: dict[str, tuple[float, float | None]]  # stream -> (start, end or None)
    origin: float = 0.0  # epoch seconds of the first event; bars count from it


def timeline_of(events: Sequence[Mapping[str, Any]], now: float | None = None) -> Timeline:
    """Fold ``events`` into a :class:`Timeline`; it spans to ``now`` (epoch seconds) when
    that is later than the last event (a live run), else to the last event."""
    times = [t for t in (_seconds(e.get("ts")) for e in events) if t is not None]
    origin = min(times) if times else 0.0
    end = max([*times, *([now] if now is not None and times else [])], default=0.0)
    streams: list[str] = []
    bars: dict[tuple[str, str, int], Bar] = {}
    rollbacks: dict[str, tuple[float, float | None]] = {}
    run_id = ""
    for event in events:
        stream, step = event.get("stream"), event.get("step")
        name = event.get("event")
        if name == "run_started":
            run_id = str(event.get("run_id") or "")
        if not isinstance(stream, str):
            continue
        if stream not in streams:
            streams.append(stream)
        at = _seconds(event.get("ts"))
        rel = None if at is None else at - origin
        if name == "rollback_started" and rel is not None:
            rollbacks[stream] = (rel, None)
        elif name in ("rollback_finished", "rollback_abandoned") and stream in rollbacks:
            rollbacks[stream] = (rollbacks[stream][0], rel)
        if not isinstance(step, str) or name not in (
            "step_queued",
            "step_waiting",
            "step_started",
            "step_finished",
        ):
            continue
        raw_attempt = event.get("attempt")
        attempt = raw_attempt if isinstance(raw_attempt, int) else 1
        bar = bars.setdefault((stream, step, attempt), Bar(stream, step, attempt))
        locks = event.get("locks")
        if isinstance(locks, list) and locks:
            bar.locks = tuple(str(lock) for lock in locks)
        if isinstance(event.get("phase"), str):
            bar.phase = str(event["phase"])
        if name == "step_queued":
            bar.queued = rel
        elif name == "step_waiting":
            bar.blockers = tuple(_holders(event.get("blocked_on"), run_id))
        elif name == "step_started":
            bar.started = rel
        else:
            bar.finished = rel
            bar.status = str(event.get("status") or "succeeded")
    return Timeline(streams, list(bars.values()), max(end - origin, 1e-6), rollbacks, origin)


def _holders(blocked_on: Any, run_id: str) -> list[str]:
    if not isinstance(blocked_on, list):
        return []
    return [
        str(h).removeprefix(f"{run_id}/")
        for item in blocked_on
        if isinstance(item, Mapping) and isinstance(item.get("holders"), list)
        for h in item["holders"]
    ]


def critical_path(bars: Sequence[Bar]) -> list[Bar]:
    """The chain of attempts that set the run's length, first to last.

    It ends at the attempt that finished last. Each attempt's predecessor is the one whose
    end let it go on: if it waited after being queued, the holder it waited for (named by
    ``step_waiting``; without one, whatever ended last before it started), else whatever
    ended last before it was queued (a step it needs, a stream it depends on). Derived from
    events alone, so a finished run and its report draw the same path.
    """
    done = [b for b in bars if b.finished is not None and b.started is not None]
    if not done:
        return []
    current = max(done, key=lambda b: b.finished or 0.0)
    path = [current]
    on_path = {id(current)}
    eps = 1e-3
    while True:
        started = current.started if current.started is not None else 0.0
        waited = current.queued is not None and started - current.queued > eps
        ready = started if waited else (current.queued if current.queued is not None else started)
        before = [b for b in done if (b.finished or 0.0) <= ready + eps and id(b) not in on_path]
        if waited and current.blockers:
            named = [b for b in before if b.key in current.blockers]
            before = named or before
        if not before:
            return path[::-1]
        current = max(before, key=lambda b: b.finished or 0.0)
        path.append(current)
        on_path.add(id(current))


def render_svg(events: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """The Gantt chart of ``events`` as an inline ``<svg>`` element (to ``now`` if later)."""
    timeline = timeline_of(events, now)
    return render_timeline(timeline, critical_path(timeline.bars))


def render_timeline(timeline: Timeline, path: Sequence[Bar]) -> str:
    """:func:`render_svg` of a timeline already made, with its critical ``path``."""
    streams, bars, span = timeline.streams, timeline.bars, timeline.span
    critical = {id(b) for b in path}
    scale = CHART_W / span
    lanes_h = LANE_H * max(len(streams), 1)
    height = lanes_h + 44
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{LABEL_W + CHART_W + 10}"'
        f' height="{height}" role="img" aria-label="run timeline">'
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="3" height="6" fill="#fff" opacity="0.55"/>'
        "</pattern></defs>"
    ]
    for i, stream in enumerate(streams):
        y = i * LANE_H
        out.append(
            f'<g class="lane" data-stream="{escape(stream)}">'
            f'<text x="4" y="{y + 18}" font-size="12">{escape(stream)}</text>'
        )
        if stream in timeline.rollbacks:
            begin, end = timeline.rollbacks[stream]
            stop = end if end is not None else span
            out.append(
                f'<rect class="rollback-span" x="{LABEL_W + begin * scale:.1f}" y="{y + 1}"'
                f' width="{max((stop - begin) * scale, 1.0):.1f}" height="{LANE_H - 2}"'
                f' fill="{ROLLBACK_COLOUR}"><title>{escape(stream)}: '
                f"{'rolled back' if end is not None else 'rolling back'}</title></rect>"
            )
        for bar in (b for b in bars if b.stream == stream):
            out.extend(_bar(bar, y, scale, span, critical=id(bar) in critical))
        out.append("</g>")
    out.append(
        f'<text x="{LABEL_W}" y="{lanes_h + 16}" font-size="11">0 s</text>'
        f'<text x="{LABEL_W + CHART_W - 60}" y="{lanes_h + 16}" font-size="11">{span:.1f} s'
        f"</text>{_legend(lanes_h + 36)}</svg>"
    )
    return "".join(out)


def _bar(bar: Bar, y: int, scale: float, span: float, *, critical: bool) -> list[str]:
    out: list[str] = []
    start = bar.started if bar.started is not None else bar.finished
    stop = bar.finished if bar.finished is not None else span
    what = f"{bar.phase}: " if bar.phase else ""
    name = f"{what}{bar.step} (attempt {bar.attempt})"
    label = escape(f"{name}: {bar.status}")
    waited_to = start if start is not None else (span if bar.finished is None else None)
    if bar.queued is not None and waited_to is not None and waited_to > bar.queued:
        held_by = f"; held by {', '.join(bar.blockers)}" if bar.blockers else ""
        tense = "waiting" if start is None else "waited"
        out.append(
            f'<rect class="wait" x="{LABEL_W + bar.queued * scale:.1f}" y="{y + 6}"'
            f' width="{(waited_to - bar.queued) * scale:.1f}" height="16"'
            f' fill="{WAIT_COLOUR}"><title>{escape(name + " " + tense + held_by)}</title></rect>'
        )
    if start is None:
        return out
    colour = STATUS_COLOURS.get(bar.status, "#6a1b9a")
    if bar.locks:  # a lock hold: outlined, and named in the tooltip
        label += escape(f"; holds {', '.join(bar.locks)}")
    if critical:
        label += "; on the critical path"
    held = ' stroke="#000" stroke-width="2"' if bar.locks else ""
    kind = " holds-lock" if bar.locks else ""
    kind += f" phase-{escape(bar.phase)}" if bar.phase else ""
    kind += " critical" if critical else ""
    x, width = LABEL_W + start * scale, max((stop - start) * scale, 1.0)
    out.append(
        f'<rect class="bar status-{escape(bar.status)}{kind}"{held}'
        f' data-step="{escape(bar.step)}" x="{x:.1f}" y="{y + 4}" width="{width:.1f}"'
        f' height="20" fill="{colour}"><title>{label}</title></rect>'
    )
    if bar.phase:  # an undo or rollback step: hatched over its status colour
        out.append(
            f'<rect class="rollback-hatch" x="{x:.1f}" y="{y + 4}" width="{width:.1f}"'
            ' height="20" fill="url(#hatch)" pointer-events="none"/>'
        )
    if critical:
        out.append(
            f'<rect class="critical-mark" x="{x:.1f}" y="{y + 24}" width="{width:.1f}"'
            f' height="3" fill="{CRITICAL_COLOUR}" pointer-events="none"/>'
        )
    return out


def _legend(y: int) -> str:
    items = [
        (WAIT_COLOUR, "waiting"),
        (STATUS_COLOURS["running"], "running"),
        (STATUS_COLOURS["succeeded"], "succeeded"),
        (STATUS_COLOURS["failed"], "failed"),
        (ROLLBACK_COLOUR, "rollback"),
        (CRITICAL_COLOUR, "critical path"),
    ]
    out = ['<g class="legend" font-size="11">']
    for i, (colour, text) in enumerate(items):
        x = LABEL_W + i * 95
        out.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{y}">{text}</text>'
        )
    out.append(f'<text x="{LABEL_W + len(items) * 95}" y="{y}">black outline: lock held</text></g>')
    return "".join(out)
