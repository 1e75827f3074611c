"""A run's timeline as an SVG Gantt chart, derived from its stored events only.

One lane per stream; per step attempt a grey bar for the time it waited (queued until
started) and a bar coloured by its final status for the time it ran. Everything that
comes from a plan or an event is escaped.
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


def _seconds(ts: Any) -> float | None:
    if not isinstance(ts, str):
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def bars_from_events(events: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[Bar], float]:
    """The streams in order of first appearance, the step bars, and the span in seconds."""
    times = [t for t in (_seconds(e.get("ts")) for e in events) if t is not None]
    origin = min(times) if times else 0.0
    end = max(times) if times else 0.0
    streams: list[str] = []
    bars: dict[tuple[str, str, int], Bar] = {}
    for event in events:
        stream, step = event.get("stream"), event.get("step")
        if not isinstance(stream, str):
            continue
        if stream not in streams:
            streams.append(stream)
        name = event.get("event")
        if not isinstance(step, str) or name not in (
            "step_queued",
            "step_started",
            "step_finished",
        ):
            continue
        raw_attempt = event.get("attempt")
        attempt = raw_attempt if isinstance(raw_attempt, int) else 1
        bar = bars.setdefault((stream, step, attempt), Bar(stream, step, attempt))
        at = _seconds(event.get("ts"))
        rel = None if at is None else at - origin
        locks = event.get("locks")
        if isinstance(locks, list) and locks:
            bar.locks = tuple(str(lock) for lock in locks)
        if name == "step_queued":
            bar.queued = rel
        elif name == "step_started":
            bar.started = rel
        else:
            bar.finished = rel
            bar.status = str(event.get("status") or "succeeded")
    return streams, list(bars.values()), max(end - origin, 1e-6)


def render_svg(events: Sequence[Mapping[str, Any]]) -> str:
    """The Gantt chart of ``events`` as an inline ``<svg>`` element."""
    streams, bars, span = bars_from_events(events)
    scale = CHART_W / span
    height = LANE_H * max(len(streams), 1) + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="gantt" width="{LABEL_W + CHART_W + 10}"'
        f' height="{height}" role="img" aria-label="run timeline">'
    ]
    for i, stream in enumerate(streams):
        y = i * LANE_H
        out.append(
            f'<g class="lane" data-stream="{escape(stream)}">'
            f'<text x="4" y="{y + 18}" font-size="12">{escape(stream)}</text>'
        )
        for bar in (b for b in bars if b.stream == stream):
            start = bar.started if bar.started is not None else bar.finished
            stop = bar.finished if bar.finished is not None else span
            label = escape(f"{bar.step} (attempt {bar.attempt}): {bar.status}")
            if bar.queued is not None and start is not None and start > bar.queued:
                out.append(
                    f'<rect class="wait" x="{LABEL_W + bar.queued * scale:.1f}" y="{y + 6}"'
                    f' width="{(start - bar.queued) * scale:.1f}" height="16"'
                    f' fill="{WAIT_COLOUR}"><title>{label} waiting</title></rect>'
                )
            if start is None:
                continue
            colour = STATUS_COLOURS.get(bar.status, "#6a1b9a")
            if bar.locks:  # a lock hold: outlined, and named in the tooltip
                label += escape(f"; holds {', '.join(bar.locks)}")
            held = ' stroke="#000" stroke-width="2"' if bar.locks else ""
            kind = " holds-lock" if bar.locks else ""
            out.append(
                f'<rect class="bar status-{escape(bar.status)}{kind}"{held}'
                f' data-step="{escape(bar.step)}"'
                f' x="{LABEL_W + start * scale:.1f}" y="{y + 4}"'
                f' width="{max((stop - start) * scale, 1.0):.1f}" height="20"'
                f' fill="{colour}"><title>{label}</title></rect>'
            )
        out.append("</g>")
    out.append(
        f'<text x="{LABEL_W}" y="{height - 6}" font-size="11">0 s</text>'
        f'<text x="{LABEL_W + CHART_W - 60}" y="{height - 6}" font-size="11">{span:.1f} s</text>'
        "</svg>"
    )
    return "".join(out)
