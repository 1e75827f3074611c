r"""Success gates: a plan's criteria over metrics, parsed and compiled.

The grammar lives in :mod:`streams._gate_grammar`; this module turns a plan's gate into
compiled criteria (:func:`compile_gate`) and checks them for plan validation
(:func:`check_gate_expressions`). Evaluating them against measured metrics, which only a run
does, is :mod:`streams.gate_evaluation` (kept apart so that validating a plan does not
create the evaluation's result types).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from streams._gate_grammar import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    RESERVED_WORDS,
    And,
    Comparison,
    Expr,
    GateSyntaxError,
    Not,
    Op,
    Or,
    ParsedCriterion,
    Value,
    parse_criterion,
    to_text,
)
from streams.model import GateCriterion, GateSpec

__all__ = [
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "RESERVED_WORDS",
    "And",
    "Comparison",
    "CompiledCriterion",
    "Expr",
    "GateExpressionProblem",
    "GateSyntaxError",
    "Not",
    "Op",
    "Or",
    "ParsedCriterion",
    "Value",
    "check_gate_expressions",
    "compile_gate",
    "parse_criterion",
    "to_text",
]


@dataclass(frozen=True, slots=True)
class CompiledCriterion:
    """A gate criterion ready to evaluate: its index in the gate, text, tree and weight."""

    index: int
    text: str
    expr: Expr
    weight: float


def _compile(index: int, criterion: GateCriterion | str) -> CompiledCriterion:
    if isinstance(criterion, str):
        text, written = criterion, None
    else:
        # The model defaults weight to 1; only a weight the plan spelled out conflicts.
        text = criterion.expr
        written = criterion.weight if "weight" in criterion.model_fields_set else None
    try:
        parsed = parse_criterion(text)
    except GateSyntaxError as error:
        raise GateSyntaxError(text, error.column, error.reason, criterion=index) from None
    if parsed.weight is not None and written is not None:
        raise GateSyntaxError(
            text,
            parsed.weight_column,
            f"weight given twice: inline 'weight' and 'weight: {written:g}' "
            "beside the expression; keep one",
            criterion=index,
        )
    weight = next((w for w in (parsed.weight, written) if w is not None), 1.0)
    if not (math.isfinite(weight) and weight > 0):
        raise GateSyntaxError(
            text, 0, f"a weight must be a positive finite number, found {weight}", criterion=index
        )
    return CompiledCriterion(index, text, parsed.expr, weight)


def compile_gate(gate: GateSpec) -> tuple[CompiledCriterion, ...]:
    """Parse every criterion of ``gate`` and settle its weight.

    Raises :class:`GateSyntaxError` (with ``criterion`` set) for the first criterion that
    does not parse or weighs wrongly; a plan that passed validation raises nothing.
    """
    return tuple(_compile(i, c) for i, c in enumerate(gate.criteria))


class GateExpressionProblem(NamedTuple):
    """A problem with the gate's criterion number ``criterion`` (0-based): the 1-based
    ``column`` in its expression (0: its YAML weight) and a ``message`` saying what was
    expected there."""

    criterion: int
    column: int
    message: str


def check_gate_expressions(gate: GateSpec) -> list[GateExpressionProblem]:
    """Every criterion of ``gate`` that does not parse or weighs wrongly (empty when the
    gate is sound), for plan validation to report at the criterion's place in the file."""
    problems: list[GateExpressionProblem] = []
    for index, criterion in enumerate(gate.criteria):
        try:
            _compile(index, criterion)
        except GateSyntaxError as error:
            problems.append(GateExpressionProblem(index, error.column, error.reason))
    return problems
