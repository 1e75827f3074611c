"""Rendering a plan's analysis: the decision-matrix table, and its JSON form.

The table follows the users' phase documents::

    Focus Area             Success Probability  Risk         Timeline           Methodology  Runs
    Redis Authentication   95% (78-100%)        Low (5%)     15m-30m (plan)     patch        0

then the average success probability, the expected makespan and the critical path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.analysis import PlanAnalysis, StreamEstimate, TimelineEstimate

__all__ = ["analysis_json", "format_span", "render_analysis", "risk_level"]

_HEADERS = ("Focus Area", "Success Probability", "Risk", "Timeline", "Methodology", "Runs")


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


def _row(s: StreamEstimate) -> tuple[str, ...]:
    low, high = s.interval()
    return (
        s.title,
        f"{s.p:.0%} ({low:.0%}-{high:.0%})",
        f"{risk_level(s.risk)} ({s.risk:.0%})",
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
        f"Average success probability: {analysis.average_p:.0%}",
        f"Expected makespan: {format_span(schedule.makespan_s)} "
        "(parallel streams under the plan's caps and locks)",
        "Critical path:",
    ]
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
