"""One run's page: its parts rendered from the run's events, and ``orchestrator report``.

:func:`render_parts` renders the page's live parts (summary line, streams, timeline,
agents, steps), each keyed by the id of the element that holds it; the dashboard's live
page replaces those elements' contents as events arrive, and :func:`render_report` puts them
in one self-contained HTML file (inline CSS and SVG, nothing fetched), read straight from the
run store, for a post-mortem.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import anyio

from foundation.errors import OrchestratorError
from orchestrator.progress import RunView, format_timeline
from orchestrator.store import open_store
from orchestrator.store.base import RunRecord, RunStore
from orchestrator.web.gantt import critical_path, render_timeline, timeline_of
from orchestrator.web.run_state import RunState, fold_run_state
from streams.durations import format_duration

__all__ = ["CSS", "read_all_events", "render_parts", "render_report", "write_report"]

CSS = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}"
    ".rolling-back{color:#e65100;font-weight:bold}.held-by{color:#6d4c41}"
)


def render_parts(
    events: Sequence[Mapping[str, Any]], *, now: float | None = None
) -> dict[str, str]:
    """Each live part of the run page as HTML, keyed by its element id. ``now`` (epoch
    seconds) measures running streams; default: the last event's time."""
    view = RunView()  # the same fold as `orchestrator watch`
    for event in events:
        view.apply(event)
    state = fold_run_state(events)
    at = view.last_ts if now is None or view.status != "running" else now
    timeline = timeline_of(events, at)
    done = sum(v.done for v in view.streams.values())
    total = sum(v.total for v in view.streams.values())
    elapsed = at - timeline.origin if events else 0.0
    path = critical_path(timeline.bars)
    critical = (
        "Critical path: "
        + escape(" → ".join(f"{b.stream}/{b.step}" for b in path))
        + f" ({format_duration(sum((b.finished or 0) - (b.started or 0) for b in path))}"
        " of service time)"
        if path
        else ""
    )
    return {
        "summary": f"{escape(view.status)} &middot; {done}/{total} steps done &middot; "
        f"elapsed {format_duration(max(elapsed, 0.0))}",
        "streams": _streams(view, state, at),
        "timeline": render_timeline(timeline, path),
        "critical": critical,
        "agents": _agents(state),
        "steps": "<tr><th>stream</th><th>step</th><th>attempt</th><th>status</th>"
        "<th>phase</th></tr>"
        + "".join(
            f"<tr><td>{escape(b.stream)}</td><td>{escape(b.step)}</td><td>{b.attempt}</td>"
            f"<td>{escape(b.status)}</td><td>{escape(b.phase)}</td></tr>"
            for b in timeline.bars
        ),
    }


def _streams(view: RunView, state: RunState, now: float) -> str:
    rows = []
    for v in view.streams.values():
        if v.id in state.rolling_back:
            status = '<span class="rolling-back">rolling back</span>'
        else:
            status = escape(v.status)
            if v.id in state.rolled_back:
                status += escape(f" (rollback {state.rolled_back[v.id]})")
        waits = state.waits_of(v.id)
        waiting = "; ".join(f"{step}: {w.resource}" for step, w, _ in waits)
        held_by = "; ".join(f"{w.resource}: {', '.join(h) or 'nobody'}" for _, w, h in waits)
        rows.append(
            f'<tr class="stream" data-stream="{escape(v.id)}"><td>{escape(v.id)}</td>'
            f'<td class="status">{status}</td><td>{v.done}/{v.total}</td>'
            f"<td>{escape(', '.join(f'{k} ({a})' for k, a in v.running.items()))}</td>"
            f'<td>{escape(waiting)}</td><td class="held-by">{escape(held_by)}</td>'
            f"<td>{escape(format_timeline(v, now))}</td>"
            f"<td>{escape(state.gates.get(v.id, ''))}</td>"
            f"<td>{escape(v.reason)}</td></tr>"
        )
    return (
        "<tr><th>stream</th><th>status</th><th>progress</th><th>running (agent)</th>"
        "<th>waiting for</th><th>held by</th><th>elapsed / timeline</th><th>gate</th>"
        "<th>reason</th></tr>" + "".join(rows)
    )


def _agents(state: RunState) -> str:
    kinds = sorted({k for a in state.agents.values() for k in a.tokens})
    head = "".join(f"<th>{escape(k)} tokens</th>" for k in kinds)
    rows = "".join(
        f'<tr class="agent"><td>{escape(name)}</td><td>{a.steps}</td>'
        + "".join(f"<td>{a.tokens.get(k, 0)}</td>" for k in kinds)
        + "</tr>"
        for name, a in sorted(state.agents.items())
    )
    return f"<tr><th>agent</th><th>steps finished</th>{head}</tr>{rows}"


def render_report(
    run: RunRecord,
    events: Sequence[Mapping[str, Any]],
    *,
    live: str = "",
    dashboard: bool = False,
    now: float | None = None,
) -> str:
    """The run page of ``run`` as one HTML document; every plan/event text is escaped.
    The dashboard adds links to its other pages and ``live`` (a script) before ``</body>``;
    a report file has neither. ``now``: as for :func:`render_parts`."""
    parts = render_parts(events, now=now)
    nav = '<p><a href="/">runs</a> &middot; <a href="/locks">locks</a></p>' if dashboard else ""
    reason = f"<p>Reason: {escape(run.reason)}</p>" if run.reason else ""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>Run {escape(run.run_id)}</title><style>{CSS}</style></head><body>"
        f"<h1>Run {escape(run.run_id)}</h1>{nav}"
        f"<p>Plan: {escape(run.plan)} &middot; created {escape(run.created_at.isoformat())}"
        f' &middot; <span id="summary">{parts["summary"]}</span></p>{reason}'
        f'<h2>Streams</h2><table id="streams">{parts["streams"]}</table>'
        f'<h2>Timeline</h2><div id="timeline">{parts["timeline"]}</div>'
        f'<p id="critical">{parts["critical"]}</p>'
        f'<h2>Agents</h2><table id="agents">{parts["agents"]}</table>'
        f'<h2>Steps</h2><table id="steps">{parts["steps"]}</table>{live}</body></html>'
    )


async def read_all_events(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """Every stored event of ``run_id`` in ``seq`` order."""
    events: list[dict[str, Any]] = []
    while True:
        page = await store.read_events(run_id, after_seq=int(events[-1]["seq"]) if events else 0)
        if not page:
            return events
        events.extend(page)


async def write_report(
    run_id: str, output: Path, *, store_url: str | Path | None, state_dir: Path
) -> None:
    """Write the report of ``run_id`` to ``output``.

    Raises OrchestratorError naming the fix when the run is not in the store.
    """
    async with open_store(store_url, state_dir=state_dir) as store:
        run = await store.get_run(run_id)
        if run is None:
            raise OrchestratorError(
                f"report: no run {run_id!r} in the run store; list runs with `orchestrator runs`"
            )
        events = await read_all_events(store, run_id)
    await anyio.Path(output).write_text(render_report(run, events), encoding="utf-8")
