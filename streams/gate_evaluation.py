r"""Evaluating a plan's success gate against the metrics a run measured.

A comparison is *met*, *not met* or *not measured* (its metric was reported by
no step, or, with ``require_verified``, only claimed by an agent). ``and``/``or``/``not``
combine these as three-valued (Kleene) logic: ``x and y`` is not met as soon as one side is
not met, however the other turned out. A comparison that cannot be made (a measured string
ordered with ``<``, a number compared with a string, NaN) makes its whole criterion not met,
so that a broken criterion never passes a gate through ``or`` or ``not``. Confidence is the
weighted share of criteria met (not measured counts as not met); the gate passes when the
confidence reaches the threshold, computed exactly over the written numbers.

The criteria are parsed and compiled by :mod:`streams.gates`; this module is what a run adds
(validating a plan never imports it).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from streams._gate_grammar import _COMPARE, Comparison, Expr, Not, Or, Value, _literal, _show
from streams.gates import CompiledCriterion, compile_gate
from streams.model import GateSpec

__all__ = [
    "ComparisonResult",
    "CriterionResult",
    "GateResult",
    "MetricValue",
    "Verdict",
    "evaluate_gate",
]


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One metric sample: ``verified`` when the daemon collected it itself, else only
    claimed by an external agent; ``source`` names the step or agent that reported it."""

    value: Value
    verified: bool
    source: str


class Verdict(enum.StrEnum):
    """A criterion's or comparison's outcome; not measured counts as not met in confidence."""

    MET = "met"
    NOT_MET = "not met"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True, slots=True)
class ComparisonResult:
    """One comparison of a criterion: the sample it looked at (None: none reported), its
    verdict, whether the comparison could be made at all, and why, in words."""

    comparison: Comparison
    sample: MetricValue | None
    verdict: Verdict
    comparable: bool
    reason: str


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "true/false"
    return "a string" if isinstance(value, str) else "a number"


def _compare(
    node: Comparison, sample: MetricValue | None, require_verified: bool
) -> ComparisonResult:
    metric, op, wanted = node.metric, node.op, node.value
    if sample is None:
        return ComparisonResult(
            node, None, Verdict.NOT_MEASURED, True, f"{metric} was not measured by any step"
        )
    shown = f"{metric} = {_show(sample.value)}"
    if require_verified and not sample.verified:
        return ComparisonResult(
            node,
            sample,
            Verdict.NOT_MEASURED,
            True,
            f"{shown} was only claimed (by {sample.source}), verified required",
        )
    value = sample.value
    if isinstance(value, float) and math.isnan(value):
        return ComparisonResult(
            node, sample, Verdict.NOT_MET, False, f"{shown} is not a number: not met"
        )
    if _kind(value) != _kind(wanted):
        return ComparisonResult(
            node,
            sample,
            Verdict.NOT_MET,
            False,
            f"{shown}: cannot compare {_kind(value)} with {_kind(wanted)} using '{op}': not met",
        )
    if _COMPARE[op](value, wanted):
        return ComparisonResult(
            node, sample, Verdict.MET, True, f"{shown} {op} {_literal(wanted)}: met"
        )
    return ComparisonResult(
        node, sample, Verdict.NOT_MET, True, f"{shown}, not {op} {_literal(wanted)}: not met"
    )


def _combine(node: Expr, leaf: Callable[[Comparison], Verdict]) -> Verdict:
    """Three-valued (Kleene) logic over the leaves' verdicts; every leaf is visited."""
    if isinstance(node, Comparison):
        return leaf(node)
    if isinstance(node, Not):
        inner = _combine(node.operand, leaf)
        swap = {Verdict.MET: Verdict.NOT_MET, Verdict.NOT_MET: Verdict.MET}
        return swap.get(inner, inner)
    sides = {_combine(node.left, leaf), _combine(node.right, leaf)}
    decisive = Verdict.MET if isinstance(node, Or) else Verdict.NOT_MET
    if decisive in sides:
        return decisive
    return Verdict.NOT_MEASURED if Verdict.NOT_MEASURED in sides else sides.pop()


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One criterion's outcome: text as written, weight, verdict, the reason (its
    comparisons' reasons, in order) and each comparison's result."""

    index: int
    text: str
    weight: float
    verdict: Verdict
    reason: str
    comparisons: tuple[ComparisonResult, ...]

    def as_event(self) -> dict[str, Any]:
        """A JSON-able dict: expr, weight, verdict, reason and the values looked at."""
        values: dict[str, dict[str, Any]] = {}
        for result in self.comparisons:
            sample = result.sample
            values.setdefault(
                result.comparison.metric,
                {
                    "metric": result.comparison.metric,
                    "value": sample.value if sample else None,
                    "verified": sample.verified if sample else False,
                    "source": sample.source if sample else None,
                },
            )
        return {
            "expr": self.text,
            "weight": self.weight,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "values": list(values.values()),
        }


@dataclass(frozen=True, slots=True)
class GateResult:
    """A gate's outcome: ``confidence`` (weighted share of criteria met; 0 without
    criteria), the ``threshold``, whether it ``passed`` and each criterion's result."""

    confidence: float
    threshold: float
    passed: bool
    require_verified: bool
    criteria: tuple[CriterionResult, ...]

    def as_event(self) -> dict[str, Any]:
        """The fields of a ``gate_evaluated`` event (JSON-able)."""
        return {
            "passed": self.passed,
            "confidence": self.confidence,
            "threshold": self.threshold,
            "require_verified": self.require_verified,
            "criteria_met": sum(c.verdict is Verdict.MET for c in self.criteria),
            "criteria": [c.as_event() for c in self.criteria],
        }


def _evaluate(
    criterion: CompiledCriterion, metrics: Mapping[str, MetricValue], require_verified: bool
) -> CriterionResult:
    results: list[ComparisonResult] = []

    def leaf(node: Comparison) -> Verdict:
        results.append(_compare(node, metrics.get(node.metric), require_verified))
        return results[-1].verdict

    verdict = _combine(criterion.expr, leaf)
    if not all(r.comparable for r in results):
        verdict = Verdict.NOT_MET
    return CriterionResult(
        criterion.index,
        criterion.text,
        criterion.weight,
        verdict,
        "; ".join(r.reason for r in results),
        tuple(results),
    )


def evaluate_gate(gate: GateSpec, metrics: Mapping[str, MetricValue]) -> GateResult:
    """Evaluate ``gate`` over ``metrics`` (by full dotted name).

    The gate passes when the weighted share of criteria met reaches ``gate.threshold``,
    compared exactly (as fractions of the written numbers, so 0.1 + 0.2 of weight 1 does
    reach 0.3). Raises :class:`GateSyntaxError` for a criterion that does not parse, which
    a validated plan never has.
    """
    results = tuple(_evaluate(c, metrics, gate.require_verified) for c in compile_gate(gate))
    total = sum((Fraction(r.weight) for r in results), Fraction(0))
    met = sum((Fraction(r.weight) for r in results if r.verdict is Verdict.MET), Fraction(0))
    share = met / total if total else Fraction(0)
    return GateResult(
        float(share),
        gate.threshold,
        share >= Fraction(gate.threshold),
        gate.require_verified,
        results,
    )
