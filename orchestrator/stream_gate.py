"""A stream's success gate, decided from what its steps really measured and collected.

Agents claim, the daemon verifies: metrics and evidence from the daemon's own actions are
*verified*; those an external agent reports about itself are *claimed* (its result says
``details["claimed"] = True``, or the evidence record says ``verified=False``). The gate's
criteria see each metric's latest value from a succeeded step, with that label; each of the
stream's mandatory evidence requirements must be satisfied by a record that counts for it
(see :mod:`orchestrator.evidence_match`), verified where the requirement or the gate asks.
``gate_evaluated`` lists, per requirement, the record that satisfied it or why it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.evidence_match import RequirementFinding, match_requirements
from orchestrator.step_runner import StepOutcome
from streams.gate_evaluation import GateResult, MetricValue, evaluate_gate
from streams.model import StepSpec, StreamSpec

__all__ = ["GateVerdict", "collect_metrics", "decide_gate"]

Completed = Sequence[tuple[StepSpec, StepOutcome | None]]


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """Whether the stream passed, with the gate's result and what evidence is missing."""

    passed: bool
    result: GateResult | None
    missing_evidence: tuple[str, ...]
    evidence: tuple[RequirementFinding, ...] = ()

    def reason(self) -> str:
        parts: list[str] = []
        if self.result is not None and not self.result.passed:
            parts.append(
                f"gate confidence {self.result.confidence:.0%} below threshold "
                f"{self.result.threshold:.0%}"
            )
        if self.missing_evidence:
            parts.append("missing evidence: " + "; ".join(self.missing_evidence))
        return ", ".join(parts)

    def as_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "passed": self.passed,
            "missing_evidence": list(self.missing_evidence),
            "evidence": [f.as_event() for f in self.evidence],
        }
        if self.result is not None:
            event.update(self.result.as_event())
            event["passed"] = self.passed
        return event


def _claimed(outcome: StepOutcome, metric: str) -> bool:
    """Whether an agent only claims ``metric`` (an external driver lists those it claims)."""
    if outcome.result is None:
        return False
    details = outcome.result.details
    return bool(details.get("claimed")) or metric in details.get("claimed_metrics", ())


def collect_metrics(completed: Completed) -> dict[str, MetricValue]:
    """Each metric's latest value among succeeded steps, labelled verified or claimed."""
    metrics: dict[str, MetricValue] = {}
    for step, outcome in completed:
        if outcome is None or outcome.result is None:
            continue
        for name, value in outcome.result.metrics.items():
            verified = not _claimed(outcome, name)
            how = "verified" if verified else f"claimed by {step.agent}"
            metrics[name] = MetricValue(
                value=value, verified=verified, source=f"step {step.id} ({how})"
            )
    return metrics


def decide_gate(stream: StreamSpec, completed: Completed) -> GateVerdict | None:
    """The stream's verdict, or None when it has neither a gate nor mandatory evidence."""
    if stream.gate is None and not stream.evidence:
        return None
    result = evaluate_gate(stream.gate, collect_metrics(completed)) if stream.gate else None
    findings = tuple(match_requirements(stream, completed))
    missing = tuple(f.missing_text() for f in findings if not f.satisfied)
    passed = (result.passed if result is not None else True) and not missing
    return GateVerdict(passed=passed, result=result, missing_evidence=missing, evidence=findings)
