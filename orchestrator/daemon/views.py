"""JSON-able views for the control socket's answers: runs, agents and locks.

Pure functions over store records, live run views and coordinator snapshots, so the daemon
and the tests build the same shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.coordination.base import CoordinationSnapshot
from orchestrator.progress import RunView
from orchestrator.step_output import StepOutput
from orchestrator.store import RunRecord, StepRecord, StreamRecord
from orchestrator.token_usage import TokenUsage

__all__ = [
    "agents_of",
    "created_at",
    "locks_of",
    "may_use_models",
    "run_detail",
    "run_summary",
    "usage_by_stream",
]


def _ts(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def created_at(run: RunRecord) -> datetime:
    """When the run was created, never later than it started or finished: a run of
    ``orchestrator run`` is recorded in the store only after its events."""
    return min(t for t in (run.created_at, run.started_at, run.finished_at) if t is not None)


def run_summary(run: RunRecord) -> dict[str, Any]:
    """A run's line: ids, status, times, and ``duration_s`` from its start to its end
    (to now while it runs; None before it starts)."""
    started = run.started_at
    duration_s: float | None = None
    if started is not None:
        end = run.finished_at or datetime.now(started.tzinfo)
        duration_s = round(max(0.0, (end - started).total_seconds()), 3)
    return {
        "run_id": run.run_id,
        "plan": run.plan,
        "status": run.status,
        "reason": run.reason,
        "created_at": _ts(created_at(run)),
        "started_at": _ts(started),
        "finished_at": _ts(run.finished_at),
        "duration_s": duration_s,
    }


def may_use_models(plan_source: str) -> bool:
    """Whether a plan can have steps that report model usage: only ``llm`` and
    ``claude_code`` drivers do, and such a plan names one in its text (searched, not parsed:
    a false positive only costs reading the run's ``step_finished`` events)."""
    return "llm" in plan_source or "claude_code" in plan_source


def usage_by_stream(outputs: Iterable[StepOutput]) -> dict[str, TokenUsage]:
    """Each stream's model tokens and requests, from its finished attempts' ``usage``."""
    found: dict[str, TokenUsage] = {}
    for out in outputs:
        if out.usage:
            found.setdefault(out.stream, TokenUsage()).add(out.usage)
    return found


def run_detail(
    run: RunRecord,
    streams: Sequence[StreamRecord],
    steps: Sequence[StepRecord],
    live: RunView | None,
    usage: Mapping[str, TokenUsage] | None = None,
) -> dict[str, Any]:
    """A run with its streams and steps; ``live`` adds what each stream does right now.

    Every stream and the run carry ``usage: {input_tokens, output_tokens, requests}`` (zeros
    without model calls): from ``live`` while the run is live, else from ``usage`` (by
    stream, see :func:`usage_by_stream`)."""
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        by_stream.setdefault(step.stream, []).append(
            {
                "step": step.step,
                "status": step.status,
                "attempt": step.attempt,
                "agent": step.agent,
                "resource_class": step.resource_class,
                "started_at": _ts(step.started_at),
                "finished_at": _ts(step.finished_at),
                "duration_s": step.duration_s,
                "reason": step.reason,
                "exit_code": step.exit_code,
            }
        )
    out_streams = []
    total = TokenUsage()
    for stream in streams:
        entry: dict[str, Any] = {
            "stream": stream.stream,
            "status": stream.status,
            "reason": stream.reason,
            "started_at": _ts(stream.started_at),
            "finished_at": _ts(stream.finished_at),
            "steps": by_stream.get(stream.stream, []),
        }
        view = live.streams.get(stream.stream) if live else None
        spent = view.usage if view is not None else (usage or {}).get(stream.stream, TokenUsage())
        total += spent
        entry["usage"] = spent.as_dict()
        if view is not None:
            entry.update(
                done=view.done,
                total=view.total,
                running=dict(view.running),
                waiting=dict(view.waiting),
                expected_s=view.expected_s,
                limit_s=view.limit_s,
            )
        out_streams.append(entry)
    return {**run_summary(run), "usage": total.as_dict(), "streams": out_streams}


def agents_of(runs: Iterable[Any]) -> list[dict[str, Any]]:
    """Each agent of each active run: state, current steps, locks held, waits."""
    found: list[dict[str, Any]] = []
    for active in runs:
        view: RunView = active.pipeline.view
        for name, spec in active.plan.agents.items():
            agent = view.agents.get(name)
            found.append(
                {
                    "run_id": active.run_id,
                    "agent": name,
                    "resource_class": spec.resource_class,
                    "state": agent.state if agent else "idle",
                    "running": [{"step": k, **v} for k, v in agent.running.items()]
                    if agent
                    else [],
                    "locks_held": {
                        lock: fence
                        for info in agent.running.values()
                        for lock, fence in info["locks"].items()
                    }
                    if agent
                    else {},
                    "waiting": [{"step": k, "for": v} for k, v in agent.waiting.items()]
                    if agent
                    else [],
                    "last": agent.last if agent else None,
                }
            )
    return found


def locks_of(snapshot: CoordinationSnapshot, caps: Mapping[str, int | None]) -> dict[str, Any]:
    """Per resource: holder and fencing token, last token, queue in service order; per
    class: usage against cap."""
    resources: dict[str, dict[str, Any]] = {}

    def entry(name: str) -> dict[str, Any]:
        return resources.setdefault(
            name,
            {
                "resource": name,
                "holder": None,
                "fence": None,
                "last_fence": snapshot.fences.get(name),
                "queue": [],
            },
        )

    for holder in snapshot.holders:
        for lock in holder.locks:
            item = entry(lock)
            item["holder"] = {
                "holder": holder.holder,
                **dict(holder.labels),
                "held_s": round(holder.held_s, 3),
            }
            item["fence"] = holder.fences.get(lock)
    for waiter in snapshot.waiters:
        for lock in waiter.locks:
            entry(lock)["queue"].append(
                {
                    "holder": waiter.holder,
                    **dict(waiter.labels),
                    "priority": waiter.priority,
                    "waited_s": round(waiter.waited_s, 3),
                }
            )
    for lock in snapshot.fences:
        entry(lock)
    classes = [
        {
            "class": cls,
            "in_use": snapshot.class_usage.get(cls, 0),
            "cap": caps.get(cls),
            "waiting": sum(1 for w in snapshot.waiters if w.resource_class == cls),
        }
        for cls in sorted(set(caps) | set(snapshot.class_usage))
    ]
    return {
        "resources": sorted(resources.values(), key=lambda r: r["resource"]),
        "classes": classes,
    }
