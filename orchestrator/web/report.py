"""``orchestrator report``: one run's page and timeline as a single self-contained HTML
file (inline CSS and SVG, nothing fetched), read straight from the run store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import anyio

from foundation.errors import OrchestratorError
from orchestrator.progress import RunView, _timeline
from orchestrator.store import open_store
from orchestrator.store.base import RunRecord, RunStore
from orchestrator.web.gantt import bars_from_events, render_svg

_CSS = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
)


def render_report(run: RunRecord, events: Sequence[Mapping[str, Any]]) -> str:
    """The run page of ``run`` as one HTML document; every plan/event text is escaped."""
    _, bars, _ = bars_from_events(events)
    rows = "".join(
        f"<tr><td>{escape(b.stream)}</td><td>{escape(b.step)}</td><td>{b.attempt}</td>"
        f"<td>{escape(b.status)}</td></tr>"
        for b in bars
    )
    view = RunView()  # the same fold as `orchestrator watch`
    for event in events:
        view.apply(event)
    now = view.last_ts
    streams = "".join(
        f'<tr class="stream"><td>{escape(v.id)}</td><td>{escape(v.status)}</td>'
        f"<td>{v.done}/{v.total}</td>"
        f"<td>{escape(', '.join(f'{k} ({a})' for k, a in v.running.items()))}</td>"
        f"<td>{escape('; '.join(f'{k}: {w}' for k, w in v.waiting.items()))}</td>"
        f"<td>{escape(_timeline(v, now))}</td><td>{escape(v.reason)}</td></tr>"
        for v in view.streams.values()
    )
    reason = f"<p>Reason: {escape(run.reason)}</p>" if run.reason else ""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>Run {escape(run.run_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Run {escape(run.run_id)}</h1>"
        f"<p>Plan: {escape(run.plan)} &middot; status: {escape(run.status)}"
        f" &middot; created {escape(run.created_at.isoformat())}</p>{reason}"
        "<h2>Streams</h2><table><tr><th>stream</th><th>status</th><th>progress</th>"
        "<th>running (agent)</th><th>waiting for</th><th>elapsed / timeline</th>"
        f"<th>gate, rollback, reason</th></tr>{streams}</table>"
        f"<h2>Timeline</h2>{render_svg(events)}"
        "<h2>Steps</h2><table><tr><th>stream</th><th>step</th><th>attempt</th>"
        f"<th>status</th></tr>{rows}</table></body></html>"
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
