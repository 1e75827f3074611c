"""How well the predictions of ``analyze`` have matched outcomes: ``analyze --calibration``.

Success probabilities: for every recorded verdict of each of the plan's streams, in the
order they were recorded, the probability the analysis *would have predicted* just before
it (the plan's ``success_probability`` as a prior updated by the verdicts before it only, so
no verdict predicts itself), against what happened (1 succeeded, 0 failed). Over all of
them: the Brier score (mean squared difference; 0 is perfect, 0.25 is what always saying
50% earns) and a reliability table by predicted-probability bucket (how many predictions,
their mean, and the share that succeeded: a calibrated predictor has the two close).

Makespans: for each of the plan's finished runs, its real makespan (started to finished)
next to the makespan the analysis predicts for the plan from the history recorded *before
that run started*, with their ratio and the mean absolute error; and today's prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from foundation.status import RunStatus
from orchestrator.analysis._beta import posterior
from orchestrator.analysis._render import format_span
from orchestrator.store import HistoryRecord, RunStore
from streams.model import Plan

__all__ = [
    "Bucket",
    "Calibration",
    "Prediction",
    "RealRun",
    "calibrate",
    "calibration_json",
    "real_makespans",
    "render_calibration",
]

#: Reliability buckets: [0, 10%), [10%, 20%) ... [90%, 100%].
BUCKETS = 10


@dataclass(frozen=True, slots=True)
class Prediction:
    """One verdict and the probability predicted for it from the history before it."""

    stream: str
    run_id: str
    predicted: float
    succeeded: bool


@dataclass(frozen=True, slots=True)
class RealRun:
    """A finished run of the plan: its real makespan, and the one predicted before it."""

    run_id: str
    started_at: datetime
    real_s: float
    predicted_s: float | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Predictions with ``low <= p < high``: how many, their mean, the share that succeeded."""

    low: float
    high: float
    count: int
    mean_predicted: float
    observed: float


@dataclass(frozen=True, slots=True)
class Calibration:
    predictions: tuple[Prediction, ...]
    brier: float | None
    buckets: tuple[Bucket, ...]
    predicted_makespan_s: float
    runs: tuple[RealRun, ...]  # newest first

    @property
    def makespan_mae_s(self) -> float | None:
        errors = [abs(r.predicted_s - r.real_s) for r in self.runs if r.predicted_s is not None]
        return sum(errors) / len(errors) if errors else None


def calibrate(
    plan: Plan,
    history: Mapping[str, Sequence[HistoryRecord]],
    *,
    prior_weight: float,
    predicted_makespan_s: float,
    runs: Sequence[RealRun] = (),
    makespan_for: Callable[[Mapping[str, Sequence[HistoryRecord]]], float] | None = None,
) -> Calibration:
    """Score the predictions the analysis would have made for ``history``; with
    ``makespan_for`` (history -> predicted makespan), each run's makespan is predicted from
    the history recorded before it started."""
    predictions: list[Prediction] = []
    for stream in plan.streams:
        records = sorted(
            history.get(stream.signature(), ()), key=lambda r: (r.finished_at, r.run_id)
        )
        successes = failures = 0
        for record in records:
            belief = posterior(stream.success_probability, successes, failures, prior_weight)
            succeeded = record.status == "succeeded"
            predictions.append(Prediction(stream.id, record.run_id, belief.mean, succeeded))
            successes += succeeded
            failures += not succeeded
    brier = (
        sum((p.predicted - p.succeeded) ** 2 for p in predictions) / len(predictions)
        if predictions
        else None
    )
    return Calibration(
        predictions=tuple(predictions),
        brier=brier,
        buckets=_buckets(predictions),
        predicted_makespan_s=predicted_makespan_s,
        runs=tuple(
            run
            if makespan_for is None
            else dataclasses.replace(run, predicted_s=makespan_for(_before(history, run)))
            for run in runs
        ),
    )


def _before(
    history: Mapping[str, Sequence[HistoryRecord]], run: RealRun
) -> dict[str, list[HistoryRecord]]:
    return {
        sig: [r for r in rows if r.finished_at < run.started_at] for sig, rows in history.items()
    }


def _buckets(predictions: Sequence[Prediction]) -> tuple[Bucket, ...]:
    grouped: dict[int, list[Prediction]] = {}
    for p in predictions:
        grouped.setdefault(min(int(p.predicted * BUCKETS), BUCKETS - 1), []).append(p)
    return tuple(
        Bucket(
            low=i / BUCKETS,
            high=(i + 1) / BUCKETS,
            count=len(items),
            mean_predicted=sum(p.predicted for p in items) / len(items),
            observed=sum(p.succeeded for p in items) / len(items),
        )
        for i, items in sorted(grouped.items())
    )


async def real_makespans(
    store: RunStore, plan: Plan, *, limit: int = 20, look_back: int = 500
) -> list[RealRun]:
    """Up to ``limit`` of ``plan``'s runs that succeeded or failed (cancelled and
    interrupted runs did not run their course), newest first. Raises StoreError."""
    found: list[RealRun] = []
    done = (RunStatus.SUCCEEDED, RunStatus.FAILED)
    for run in await store.list_runs(limit=look_back, statuses=done):
        if run.plan != plan.plan or run.started_at is None or run.finished_at is None:
            continue
        real_s = (run.finished_at - run.started_at).total_seconds()
        found.append(RealRun(run.run_id, run.started_at, real_s))
        if len(found) >= limit:
            break
    return found


def render_calibration(calibration: Calibration) -> str:
    """The ``--calibration`` section of ``analyze``."""
    lines = ["", "Calibration (predictions from the history before each verdict):"]
    if calibration.brier is None:
        lines.append("  no recorded verdicts yet: nothing to score")
    else:
        count = len(calibration.predictions)
        lines.append(
            f"  Brier score: {calibration.brier:.3f} over {count} verdict"
            f"{'s' if count != 1 else ''} (0 is perfect; always saying 50% scores 0.250)"
        )
        lines.append("  Predicted   Verdicts  Mean predicted  Succeeded")
        lines += [
            f"  {b.low:>4.0%}-{b.high:<4.0%}  {b.count:>8}  {b.mean_predicted:>14.0%}  "
            f"{b.observed:>9.0%}"
            for b in calibration.buckets
        ]
    predicted = format_span(calibration.predicted_makespan_s)
    if not calibration.runs:
        lines.append(f"  Makespan: predicted {predicted}; no finished runs of this plan yet")
    else:
        mae = calibration.makespan_mae_s
        error = f"; mean absolute error {format_span(mae)}" if mae is not None else ""
        lines.append(
            f"  Makespan: predicted {predicted} now{error} over {len(calibration.runs)} "
            "real run(s), each predicted from the history before it:"
        )
        for run in calibration.runs:
            line = f"    {run.run_id}  real {format_span(run.real_s)}"
            if run.predicted_s is not None:
                ratio = run.predicted_s / run.real_s if run.real_s > 0 else float("inf")
                line += f"  predicted {format_span(run.predicted_s)}  predicted/real {ratio:.2f}"
            lines.append(line)
    return "\n".join(lines) + "\n"


def calibration_json(calibration: Calibration) -> dict[str, Any]:
    return {
        "brier": calibration.brier,
        "verdicts": len(calibration.predictions),
        "reliability": [
            {
                "low": b.low,
                "high": b.high,
                "count": b.count,
                "mean_predicted": b.mean_predicted,
                "observed": b.observed,
            }
            for b in calibration.buckets
        ],
        "predicted_makespan_s": calibration.predicted_makespan_s,
        "runs": [
            {
                "run_id": r.run_id,
                "started_at": r.started_at.isoformat(),
                "real_makespan_s": r.real_s,
                "predicted_makespan_s": r.predicted_s,
            }
            for r in calibration.runs
        ],
        "makespan_mae_s": calibration.makespan_mae_s,
    }
