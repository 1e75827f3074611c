"""The strategic decision matrix of a plan: what its history predicts, before it runs.

Per stream (focus area), from the run store's history of the stream's signature (its id,
methodology and actions, so history accumulates across runs and plans):

- ``p``, the success probability: the mean of a Beta posterior in which the plan's own
  ``success_probability`` is a prior worth ``prior_weight`` runs (default 4), updated by
  every recorded success and failure (see :mod:`orchestrator.analysis._beta`); with a 90%
  credible interval. A stream without a ``success_probability`` starts from Beta(1, 1).
- ``risk`` = 1 - p.
- a timeline estimate: the median and 90th percentile of the *service times* of its
  successful runs (the longest chain of its steps' own times, without waiting for caps,
  locks or GPUs: see :mod:`orchestrator.service_time`; the wall time for verdicts recorded
  before service times were), since the simulation adds the waiting itself and would count
  it twice; a failure stops early and would understate the time. Else the plan's timeline
  (expected, limit); else the durations of its failed runs; else unknown.
- what the prediction rests on: the plans, runs and dates of those records. The history
  can be scoped (:data:`HistoryScope`): by stream signature across plans (the default),
  to this plan's own runs, or none. Cancelled, skipped and crash-interrupted streams are
  never history (see :mod:`orchestrator.store._derive`).
- its methodology and how many recorded runs the estimate rests on.

Then the plan's expected parallel makespan and critical path under its caps and locks: the
real scheduler run on a virtual clock with each stream taking its estimated (median)
duration (see :mod:`orchestrator.analysis._sim`).

A plan's ``min_confidence`` is checked against ``p`` by :func:`check_min_confidence`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from orchestrator.analysis._beta import Beta, beta_cdf, posterior
from orchestrator.analysis._render import analysis_json, history_basis, render_analysis
from orchestrator.analysis._sim import PathStep, Schedule, StepTiming, simulate
from orchestrator.store import HistoryRecord, RunStore
from streams.model import Plan, StreamSpec

__all__ = [
    "DEFAULT_PRIOR_WEIGHT",
    "HISTORY_SCOPES",
    "Beta",
    "HistoryScope",
    "PathStep",
    "PlanAnalysis",
    "Schedule",
    "StepTiming",
    "StreamEstimate",
    "TimelineEstimate",
    "analysis_json",
    "analyze",
    "beta_cdf",
    "check_min_confidence",
    "estimate_streams",
    "load_history",
    "percentile",
    "posterior",
    "render_analysis",
]

#: Which history a prediction rests on: every recorded run of a stream with the same
#: signature (any plan), only this plan's runs, or none (the plan's own estimates alone).
HistoryScope = Literal["signature", "plan", "none"]
HISTORY_SCOPES: tuple[HistoryScope, ...] = ("signature", "plan", "none")

#: How many runs a plan's own ``success_probability`` counts as.
DEFAULT_PRIOR_WEIGHT = 4.0
#: The credible interval shown with each probability.
INTERVAL_MASS = 0.9


@dataclass(frozen=True, slots=True)
class TimelineEstimate:
    """How long a stream should take: ``expected_s`` (median, or the plan's expected) and
    ``high_s`` (90th percentile, or the plan's limit), from ``source``, resting on ``runs``
    recorded durations (0 unless from history). Both None when unknown."""

    expected_s: float | None
    high_s: float | None
    source: Literal["history", "plan", "failed runs", "unknown"]
    runs: int = 0


@dataclass(frozen=True, slots=True)
class StreamEstimate:
    """One row of the decision matrix."""

    stream: str
    title: str
    methodology: str | None
    signature: str
    prior_p: float | None
    successes: int
    failures: int
    posterior: Beta
    timeline: TimelineEstimate
    #: The history it rests on: the plans and runs of its records, first and last date.
    plans: tuple[str, ...] = ()
    first_at: datetime | None = None
    last_at: datetime | None = None
    declared_risk: float | None = None
    declared_risk_level: str | None = None

    @property
    def p(self) -> float:
        return self.posterior.mean

    @property
    def risk(self) -> float:
        """1 - p, exactly (0.05, not 1 - 0.95 in floats)."""
        return float(self.posterior.beta / (self.posterior.alpha + self.posterior.beta))

    @property
    def runs(self) -> int:
        return self.successes + self.failures

    def interval(self) -> tuple[float, float]:
        return self.posterior.interval(INTERVAL_MASS)


@dataclass(frozen=True, slots=True)
class PlanAnalysis:
    """The whole matrix: per stream, then the plan's schedule and its confidence problems."""

    plan: str
    prior_weight: float
    min_confidence: float | None
    streams: tuple[StreamEstimate, ...]
    schedule: Schedule
    problems: tuple[str, ...]
    history_scope: HistoryScope = "signature"
    #: The plan's last finished run: (run id, its real makespan in seconds), if any.
    last_run: tuple[str, float] | None = None

    @property
    def average_p(self) -> float:
        return sum(s.p for s in self.streams) / len(self.streams) if self.streams else 0.0


async def load_history(
    store: RunStore, plan: Plan, *, limit: int = 1000, scope: HistoryScope = "signature"
) -> Mapping[str, list[HistoryRecord]]:
    """The recorded history of every stream of ``plan``, by signature, in ``scope``: all
    runs of the signature, only those of a plan of the same name, or none. Raises
    StoreError."""
    signatures = [s.signature() for s in plan.streams]
    if scope == "none":
        return {sig: [] for sig in signatures}
    found = await store.stream_history(signatures, limit=limit)
    if scope == "plan":
        return {sig: [r for r in rows if r.plan == plan.plan] for sig, rows in found.items()}
    return found


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation between the closest ranks (as
    numpy's default); ValueError for no values."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def estimate_streams(
    plan: Plan,
    history: Mapping[str, Sequence[HistoryRecord]],
    *,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
) -> tuple[StreamEstimate, ...]:
    """Each stream's row of the matrix, in plan order, from ``history`` by signature."""
    return tuple(
        _estimate(stream, history.get(stream.signature(), ()), prior_weight)
        for stream in plan.streams
    )


def analyze(
    plan: Plan,
    history: Mapping[str, Sequence[HistoryRecord]],
    *,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    aging_s: float = 30.0,
    starve_after_s: float = 120.0,
    history_scope: HistoryScope = "signature",
    last_run: tuple[str, float] | None = None,
) -> PlanAnalysis:
    """The plan's decision matrix, makespan and critical path.

    Synchronous: the simulation runs its own trio loop (call from sync code or a worker
    thread). ``aging_s`` and ``starve_after_s`` should be the settings' values.
    """
    streams = estimate_streams(plan, history, prior_weight=prior_weight)
    schedule = simulate(
        plan,
        {s.stream: s.timeline.expected_s for s in streams},
        aging_s=aging_s,
        starve_after_s=starve_after_s,
    )
    return PlanAnalysis(
        plan=plan.plan,
        prior_weight=prior_weight,
        min_confidence=plan.min_confidence,
        streams=streams,
        schedule=schedule,
        problems=tuple(check_min_confidence(plan, streams)),
        history_scope=history_scope,
        last_run=last_run,
    )


def check_min_confidence(plan: Plan, streams: Sequence[StreamEstimate]) -> list[str]:
    """One line per stream whose predicted ``p`` is below the plan's ``min_confidence``
    (none when the plan sets none): the stream, its p, the threshold, what p rests on."""
    threshold = plan.min_confidence
    if threshold is None:
        return []
    problems = []
    for s in streams:
        if s.p < threshold:
            p, minimum = _distinct_pcts(s.p, threshold)
            problems.append(
                f"stream {s.stream}: predicted success probability {p} is below the "
                f"plan's min_confidence {minimum} ({_basis(s)})"
            )
    return problems


def _estimate(
    stream: StreamSpec, records: Sequence[HistoryRecord], prior_weight: float
) -> StreamEstimate:
    successes = sum(r.status == "succeeded" for r in records)
    failures = sum(r.status == "failed" for r in records)
    dates = sorted(r.finished_at for r in records)
    return StreamEstimate(
        stream=stream.id,
        title=stream.title or stream.id,
        methodology=stream.methodology,
        signature=stream.signature(),
        prior_p=stream.success_probability,
        successes=successes,
        failures=failures,
        posterior=posterior(stream.success_probability, successes, failures, prior_weight),
        timeline=_timeline(stream, records),
        plans=tuple(sorted({r.plan for r in records})),
        first_at=dates[0] if dates else None,
        last_at=dates[-1] if dates else None,
        declared_risk=stream.risk,
        declared_risk_level=stream.risk_level,
    )


def _time_of(record: HistoryRecord) -> float | None:
    """A record's service time, or its wall time when it predates service times."""
    return record.service_s if record.service_s is not None else record.duration_s


def _timeline(stream: StreamSpec, records: Sequence[HistoryRecord]) -> TimelineEstimate:
    succeeded = [t for r in records if r.status == "succeeded" and (t := _time_of(r)) is not None]
    if succeeded:
        return TimelineEstimate(
            percentile(succeeded, 0.5), percentile(succeeded, 0.9), "history", len(succeeded)
        )
    if stream.timeline is not None:
        return TimelineEstimate(stream.timeline.expected_s, stream.timeline.limit_s, "plan")
    failed = [t for r in records if (t := _time_of(r)) is not None]
    if failed:
        return TimelineEstimate(
            percentile(failed, 0.5), percentile(failed, 0.9), "failed runs", len(failed)
        )
    return TimelineEstimate(None, None, "unknown")


def _basis(estimate: StreamEstimate) -> str:
    """What a stream's p rests on, in words."""
    if estimate.prior_p is None:
        prior = "no success_probability in the plan, so an even prior"
    else:
        prior = f"the plan's {_pct(estimate.prior_p)}"
    if not estimate.runs:
        return f"{prior}, and no recorded runs"
    runs = "run" if estimate.runs == 1 else "runs"
    return (
        f"{prior} updated by {estimate.runs} recorded {runs}: "
        f"{estimate.successes} succeeded, {estimate.failures} failed; {history_basis(estimate)}"
    )


def _pct(value: float) -> str:
    return f"{value:.0%}"


def _distinct_pcts(value: float, threshold: float) -> tuple[str, str]:
    """Both as percentages, with as many decimals as it takes to tell them apart."""
    for digits in range(4):
        shown = f"{value:.{digits}%}", f"{threshold:.{digits}%}"
        if shown[0] != shown[1]:
            return shown
    return f"{value:%}", f"{threshold:%}"
