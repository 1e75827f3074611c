"""What the steps that succeeded before a resume measured and collected, from stored events.

A resumed run's gate must see the metrics and evidence of the steps that finished before the
daemon stopped, exactly as the first daemon would have: :func:`results_from_events` rebuilds
each succeeded step's :class:`~agents.base.ActionResult` (summary, exit code, metrics, the
metrics an agent only claimed, and the evidence records of that attempt) from its
``step_finished`` and ``evidence_collected`` events. The undo record is not in the events;
a rebuilt result has none, so rollback uses the plan's ``undo:`` as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.base import ActionResult, Evidence

__all__ = ["results_from_events"]

Key = tuple[str, str]


def results_from_events(events: Iterable[Mapping[str, Any]]) -> dict[Key, ActionResult]:
    """The latest succeeded attempt's result of each (stream, step) in ``events``."""
    finished: dict[Key, Mapping[str, Any]] = {}
    evidence: dict[tuple[str, str, int], list[Evidence]] = {}
    for event in events:
        name = event.get("event")
        stream, step = event.get("stream"), event.get("step")
        if not isinstance(stream, str) or not isinstance(step, str):
            continue
        attempt = _int(event.get("attempt"), 1)
        if name == "step_finished":
            if event.get("status") == "succeeded":
                finished[(stream, step)] = event
            else:
                finished.pop((stream, step), None)
        elif name == "evidence_collected" and event.get("step_status") == "succeeded":
            evidence.setdefault((stream, step, attempt), []).append(_evidence(event))
    results: dict[Key, ActionResult] = {}
    for (stream, step), event in finished.items():
        attempt = _int(event.get("attempt"), 1)
        metrics = _mapping(event.get("metrics"))
        claimed = event.get("claimed_metrics")
        results[(stream, step)] = ActionResult(
            ok=True,
            summary=str(event.get("reason") or ""),
            exit_code=code if type(code := event.get("exit_code")) is int else None,
            output_sha256=_text_or_none(event.get("output_sha256")),
            output_bytes=_int(event.get("output_bytes"), 0),
            metrics=metrics,
            evidence=tuple(evidence.get((stream, step, attempt), ())),
            details={"claimed_metrics": list(claimed)} if isinstance(claimed, list) else {},
        )
    return results


def _evidence(event: Mapping[str, Any]) -> Evidence:
    provides = event.get("provides")
    return Evidence(
        check=str(event.get("check") or ""),
        source=str(event.get("source") or ""),
        detail=_mapping(event.get("detail")),
        excerpt=str(event.get("excerpt") or ""),
        sha256=_text_or_none(event.get("sha256")),
        metrics=_mapping(event.get("metrics")),
        verified=event.get("verified") is not False,
        at=str(event.get("collected_at") or ""),
        id=provides[0] if isinstance(provides, list) and len(provides) == 1 else None,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any, default: int) -> int:
    return value if type(value) is int else default
