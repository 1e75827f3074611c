"""Rendering a plan's analysis: the decision-matrix table, and its JSON form.

The table follows the users' phase documents::

    Focus Area            Success Probability  Predicted Failure  Declared Risk  Timeline ...
    Redis Authentication  95% (78-100%)        Low (5%)           Low (15%)      15m-30m (plan)

"Predicted Failure" is 1 - p, from the plan's estimate and its history; "Declared Risk" is
what the plan's author declared (``risk_level`` and ``risk``), shown as written. Then which
history the prediction rests on, the average success probability, the expected makespan
(next to the plan's last real one) and the critical path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.analysis.matrix import PlanAnalysis, StreamEstimate, TimelineEstimate

__all__ = [
    "analysis_json",
    "declared_risk",
    "format_span",
    "history_basis",
    "render_analysis",
    "risk_level",
]

_HEADERS = (
    "Focus Area",
    "Success Probability",
    "Predicted Failure",
    "Declared Risk",
    "Timeline",
    "Methodology",
    "Runs",
)
_SCOPES = {
    "signature": "every recorded run of each stream's signature (any plan)",
    "plan": "this plan's own recorded runs",
    "none": "no recorded runs (the plan's own estimates only)",
}


def risk_level(risk: float) -> str:
    """``Low`` below 20%, ``Medium`` below 40%, else ``High`` (the seed's bands: 15% and
    18% low, 22% medium)."""
    if risk < 0.2:
        return "Low"
    return "Medium" if risk < 0.4 else "High"


def format_span(seconds: float) -> str:
    """Seconds for a table: ``45s``, ``15m``, ``2m30s``, ``1h05m``."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 and seconds != int(seconds) else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def _timeline(timeline: TimelineEstimate) -> str:
    if timeline.expected_s is None or timeline.high_s is None:
        return "unknown"
    if timeline.source == "plan":
        return f"{format_span(timeline.expected_s)}-{format_span(timeline.high_s)} (plan)"
    return f"{format_span(timeline.expected_s)}, p90 {format_span(timeline.high_s)}"


def history_basis(estimate: StreamEstimate) -> str:
    """Which history a stream's estimate rests on: its plans and dates."""
    if not estimate.runs or estimate.first_at is None or estimate.last_at is None:
        return "no recorded runs"
    plans = ", ".join(estimate.plans)
    first, last = estimate.first_at.date().isoformat(), estimate.last_at.date().isoformat()
    dates = first if first == last else f"{first}..{last}"
    return f"runs of plan{'s' if len(estimate.plans) > 1 else ''} {plans}, {dates}"


def declared_risk(s: StreamEstimate) -> str:
    """The plan's declared risk: its ``risk_level`` and ``risk`` (``Low (15%)``); a ``risk``
    alone gets its level from the same bands as the prediction; ``-`` when none."""
    level = s.declared_risk_level.capitalize() if s.declared_risk_level else None
    if level is None and s.declared_risk is not None:
        level = risk_level(s.declared_risk)
    pct = f"{s.declared_risk:.0%}" if s.declared_risk is not None else None
    if level and pct:
        return f"{level} ({pct})"
    return level or pct or "-"


def _row(s: StreamEstimate) -> tuple[str, ...]:
    low, high = s.interval()
    return (
        s.title,
        f"{s.p:.0%} ({low:.0%}-{high:.0%})",
        f"{risk_level(s.risk)} ({s.risk:.0%})",
        declared_risk(s),
        _timeline(s.timeline),
        s.methodology or "-",
        str(s.runs),
    )


def render_analysis(analysis: PlanAnalysis) -> str:
    """The human report: the table, then the plan-wide lines and any warnings."""
    rows = [_HEADERS, *(_row(s) for s in analysis.streams)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    schedule = analysis.schedule
    lines += [
        "",
        f"History: {_SCOPES[analysis.history_scope]} (--history plan|signature|none)",
        *(f"  {s.stream}: {history_basis(s)}" for s in analysis.streams if s.runs),
        f"Average success probability: {analysis.average_p:.0%}",
        f"Expected makespan: {format_span(schedule.makespan_s)} "
        "(parallel streams under the plan's caps and locks, from service times)",
    ]
    if analysis.last_run is not None:
        run_id, real_s = analysis.last_run
        lines.append(f"Last real makespan: {format_span(real_s)} (run {run_id})")
    lines.append("Critical path:")
    path = [
        (
            f"{step.stream}/{step.step}",
            f"{format_span(step.started_s)} -> {format_span(step.finished_s)}",
            f"after {step.after}" if step.after else "at the start",
        )
        for step in schedule.critical_path
    ]
    name_width = max((len(p[0]) for p in path), default=0)
    span_width = max((len(p[1]) for p in path), default=0)
    lines += [
        f"  {name.ljust(name_width)}  {span.ljust(span_width)}  {after}"
        for name, span, after in path
    ]
    for stream in schedule.over_limit:
        lines.append(
            f"warning: stream {stream} would run past its timeline limit in this schedule "
            "(its limit counts time spent queueing; the scheduler cancels it there)"
        )
    unknown = [s.stream for s in analysis.streams if s.timeline.source == "unknown"]
    if unknown:
        lines.append(
            f"note: no timeline and no recorded runs for {', '.join(unknown)}; "
            "counted as taking no time"
        )
    if analysis.min_confidence is not None:
        verdict = "refused without --force" if analysis.problems else "met"
        lines.append(f"min_confidence {analysis.min_confidence:.0%}: {verdict}")
        lines += [f"  {problem}" for problem in analysis.problems]
    return "\n".join(lines) + "\n"


def analysis_json(analysis: PlanAnalysis) -> dict[str, Any]:
    """The analysis as JSON-able data, for scripts (``analyze --json``)."""
    schedule = analysis.schedule
    streams = []
    for s in analysis.streams:
        low, high = s.interval()
        simulated = sum(d for (sid, _), d in schedule.durations.items() if sid == s.stream)
        streams.append(
            {
                "stream": s.stream,
                "title": s.title,
                "methodology": s.methodology,
                "signature": s.signature,
                "success_probability": s.p,
                "interval_90": [low, high],
                "risk": s.risk,
                "risk_level": risk_level(s.risk),
                "declared_risk": s.declared_risk,
                "declared_risk_level": s.declared_risk_level,
                "history": {
                    "plans": list(s.plans),
                    "first_at": s.first_at.isoformat() if s.first_at else None,
                    "last_at": s.last_at.isoformat() if s.last_at else None,
                },
                "prior": s.prior_p,
                "alpha": float(s.posterior.alpha),
                "beta": float(s.posterior.beta),
                "runs": s.runs,
                "successes": s.successes,
                "failures": s.failures,
                "timeline": {
                    "expected_s": s.timeline.expected_s,
                    "high_s": s.timeline.high_s,
                    "source": s.timeline.source,
                    "runs": s.timeline.runs,
                },
                "simulated_work_s": simulated,
            }
        )
    return {
        "plan": analysis.plan,
        "prior_weight": analysis.prior_weight,
        "streams": streams,
        "average_success_probability": analysis.average_p,
        "makespan_s": schedule.makespan_s,
        "history_scope": analysis.history_scope,
        "last_run": (
            {"run_id": analysis.last_run[0], "makespan_s": analysis.last_run[1]}
            if analysis.last_run
            else None
        ),
        "critical_path": [
            {
                "stream": p.stream,
                "step": p.step,
                "started_s": p.started_s,
                "finished_s": p.finished_s,
                "after": p.after,
            }
            for p in schedule.critical_path
        ],
        "over_limit": list(schedule.over_limit),
        "min_confidence": analysis.min_confidence,
        "problems": list(analysis.problems),
    }
