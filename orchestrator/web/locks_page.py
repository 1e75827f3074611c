"""The dashboard's ``/locks`` page: locks and class slots now (holders, fencing tokens,
queues in service order), and the agents of the active runs with their token usage.

It renders the same JSON the control socket answers ``locks.list`` and ``agents.list``
with (orchestrator.daemon.views), so the page and ``orchestrator locks``/``agents`` agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from orchestrator.web.report import CSS

__all__ = ["render_locks_page"]


def _text(value: Any) -> str:
    return escape("" if value is None else str(value))


def _who(entry: Mapping[str, Any]) -> str:
    """``stream/step (agent, run …)`` from a holder or waiter entry of ``locks_of``."""
    if entry.get("stream") and entry.get("step"):
        name = f"{entry['stream']}/{entry['step']}"
    else:
        name = str(entry.get("holder", ""))
    extra = ", ".join(str(entry[k]) for k in ("agent", "run_id") if entry.get(k))
    return escape(f"{name} ({extra})" if extra else name)


def _resources(locks: Mapping[str, Any]) -> str:
    rows = []
    for r in locks.get("resources", []):
        holder = r.get("holder")
        queue = "".join(
            f"<li>{_who(w)}: priority {_text(w.get('priority'))}, waited "
            f"{_text(w.get('waited_s'))} s</li>"
            for w in r.get("queue", [])
        )
        rows.append(
            f'<tr class="resource"><td>{_text(r.get("resource"))}</td>'
            f"<td>{_who(holder) if holder else 'free'}</td>"
            f"<td>{_text(holder.get('held_s')) + ' s' if holder else ''}</td>"
            f"<td>{_text(r.get('fence'))}</td><td>{_text(r.get('last_fence'))}</td>"
            f"<td>{f'<ol>{queue}</ol>' if queue else 'empty'}</td></tr>"
        )
    return (
        '<table id="resources"><tr><th>resource</th><th>holder</th><th>held for</th>'
        "<th>fence</th><th>last fence</th><th>queue (service order)</th></tr>"
        + ("".join(rows) or '<tr><td colspan="6">no lock used yet</td></tr>')
        + "</table>"
    )


def _classes(locks: Mapping[str, Any]) -> str:
    rows = "".join(
        f'<tr class="class"><td>{_text(c.get("class"))}</td><td>{_text(c.get("in_use"))}</td>'
        f"<td>{_text(c.get('cap') if c.get('cap') is not None else 'unlimited')}</td>"
        f"<td>{_text(c.get('waiting'))}</td></tr>"
        for c in locks.get("classes", [])
    )
    return (
        '<table id="classes"><tr><th>class</th><th>slots in use</th><th>cap</th>'
        f"<th>waiting</th></tr>{rows}</table>"
    )


def _agents(agents: Mapping[str, Any], tokens: Mapping[str, Mapping[str, int]]) -> str:
    kinds = sorted({k for by_kind in tokens.values() for k in by_kind})
    rows = []
    for a in agents.get("agents", []):
        running = ", ".join(str(r.get("step")) for r in a.get("running", []))
        held = ", ".join(f"{k} (fence {v})" for k, v in (a.get("locks_held") or {}).items())
        waiting = "; ".join(
            f"{w.get('step')}: {', '.join(map(str, w.get('for', [])))}"
            for w in a.get("waiting", [])
        )
        used = tokens.get(str(a.get("agent")), {})
        rows.append(
            f'<tr class="agent"><td>{_text(a.get("agent"))}</td><td>{_text(a.get("run_id"))}'
            f"</td><td>{_text(a.get('resource_class'))}</td><td>{_text(a.get('state'))}</td>"
            f"<td>{escape(running)}</td><td>{escape(held)}</td><td>{escape(waiting)}</td>"
            + "".join(f"<td>{used.get(k, 0)}</td>" for k in kinds)
            + "</tr>"
        )
    head = "".join(f"<th>{escape(k)} tokens</th>" for k in kinds)
    return (
        '<table id="agents"><tr><th>agent</th><th>run</th><th>class</th><th>state</th>'
        f"<th>running</th><th>locks held</th><th>waiting for</th>{head}</tr>"
        + ("".join(rows) or '<tr><td colspan="7">no active run</td></tr>')
        + "</table>"
    )


def render_locks_page(
    locks: Mapping[str, Any],
    agents: Mapping[str, Any],
    tokens: Mapping[str, Mapping[str, int]],
) -> str:
    """The page for ``locks.list`` and ``agents.list`` answers; ``tokens`` is per agent and
    kind since the daemon started (from ``step_finished.usage``). Every text is escaped."""
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Locks and agents</title>'
        f'<style>{CSS}</style></head><body><p><a href="/">runs</a></p>'
        f"<h1>Locks</h1>{_resources(locks)}<h1>Class slots</h1>{_classes(locks)}"
        "<h1>Agents</h1><p>Tokens: since the daemon started, from the steps' usage.</p>"
        f"{_agents(agents, tokens)}</body></html>"
    )
