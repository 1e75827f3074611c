"""Success gates: the criterion grammar, weights and evaluation of a gate over metrics.

Expected error columns are computed from each test's own text (``str.index`` of the offending
token), so a test shows what a user would be pointed at.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from foundation.errors import OrchestratorError
from streams.gate_evaluation import MetricValue, Verdict, evaluate_gate
from streams.gates import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    RESERVED_WORDS,
    And,
    Comparison,
    Expr,
    GateExpressionProblem,
    GateSyntaxError,
    Not,
    Or,
    ParsedCriterion,
    check_gate_expressions,
    compile_gate,
    parse_criterion,
    to_text,
)
from streams.model import GateCriterion, GateSpec

EXAMPLE = Path(__file__).parents[2] / "examples" / "phase2.yaml"


def expr(text: str) -> Expr:
    parsed = parse_criterion(text)
    assert parsed.weight is None
    return parsed.expr


def measured(value: float | str | bool, *, verified: bool = True) -> MetricValue:
    return MetricValue(value, verified, "step:probe" if verified else "agent:claimer")


A, B, C, D = (Comparison(n, "==", 1) for n in "abcd")


# -- grammar: valid expressions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("redis.noauth_errors == 0", Comparison("redis.noauth_errors", "==", 0)),
        ("gpu.utilization_pct > 50", Comparison("gpu.utilization_pct", ">", 50)),
        ("db.response_ms.p50 < 100", Comparison("db.response_ms.p50", "<", 100)),
        ("x <= 1.5", Comparison("x", "<=", 1.5)),
        ("x >= -2", Comparison("x", ">=", -2)),
        ("x != +3", Comparison("x", "!=", 3)),
        ("x < 1e3", Comparison("x", "<", 1000.0)),
        ("x < 2.5E-3", Comparison("x", "<", 0.0025)),
        ("x > -1e+2", Comparison("x", ">", -100.0)),
        ("api-gateway.http.5xx_rate < 0.01", Comparison("api-gateway.http.5xx_rate", "<", 0.01)),
        ("_private.a-b.c_d == 1", Comparison("_private.a-b.c_d", "==", 1)),
        ("a.and.or == 1", Comparison("a.and.or", "==", 1)),  # reserved only as a whole name
        ("redis.mode == 'cluster'", Comparison("redis.mode", "==", "cluster")),
        ('redis.mode != "standalone"', Comparison("redis.mode", "!=", "standalone")),
        (r"s == 'it\'s'", Comparison("s", "==", "it's")),
        (r's == "say \"hi\" \\ bye"', Comparison("s", "==", 'say "hi" \\ bye')),
        ("s == 'naïve ✓'", Comparison("s", "==", "naïve ✓")),
        ("s == ''", Comparison("s", "==", "")),
        ("redis.auth_ok == true", Comparison("redis.auth_ok", "==", True)),
        ("redis.degraded != false", Comparison("redis.degraded", "!=", False)),
        ("x<1", Comparison("x", "<", 1)),
        ("x<-1", Comparison("x", "<", -1)),
        ("  \tx ==\t1  ", Comparison("x", "==", 1)),
        ("a == 1 and b == 1", And(A, B)),
        ("a == 1 or b == 1", Or(A, B)),
        ("a == 1 or b == 1 and c == 1", Or(A, And(B, C))),
        ("a == 1 and b == 1 or c == 1", Or(And(A, B), C)),
        ("(a == 1 or b == 1) and c == 1", And(Or(A, B), C)),
        ("a == 1 and (b == 1 or c == 1)", And(A, Or(B, C))),
        ("a == 1 and b == 1 and c == 1", And(And(A, B), C)),
        ("a == 1 or b == 1 or c == 1", Or(Or(A, B), C)),
        ("a == 1 and (b == 1 and c == 1)", And(A, And(B, C))),
        ("((a == 1))", A),
        ("not a == 1", Not(A)),
        ("not not a == 1", Not(Not(A))),
        ("not a == 1 and b == 1", And(Not(A), B)),
        ("not (a == 1 and b == 1)", Not(And(A, B))),
        ("a == 1 or not b == 1 and c == 1", Or(A, And(Not(B), C))),
        ("(a == 1 or b == 1) and (c == 1 or d == 1)", And(Or(A, B), Or(C, D))),
    ],
)
def test_valid_expressions(text: str, tree: Expr) -> None:
    assert expr(text) == tree
    assert expr(to_text(tree)) == tree


def test_canonical_text_is_tidy() -> None:
    messy = "  (a==1)  and(b == 1 or   c== 'x')  weight 2.0"
    assert to_text(parse_criterion(messy)) == 'a == 1 and (b == 1 or c == "x") weight 2'
    assert to_text(expr("x < 1.50")) == "x < 1.5"
    assert to_text(expr("x < +7")) == "x < 7"


# -- grammar: invalid expressions, each at its column -------------------------------------

END = None  # the offending "token" is the end of the expression


@pytest.mark.parametrize(
    ("text", "at", "message"),
    [
        ("db.response_ms.p50 <", END, "expected a number after '<', found end of expression"),
        ("db.response_ms.p50 < ", END, "expected a number after '<', found end of expression"),
        (
            "redis.noauth_errors ==",
            END,
            "expected a number, a quoted string, true or false after '==', found end of expression",
        ),
        ("", END, "expected a metric name, '(' or 'not', found end of expression"),
        ("   ", END, "expected a metric name, '(' or 'not', found end of expression"),
        ("x = 1", "=", "'=' is not a comparison; write '==' to compare for equality"),
        ("x => 1", "=>", "'=>' is not a comparison; write '>='"),
        ("x ! 1", "!", "'!' is not an operator; write '!=' or 'not'"),
        ("a > 1 && b < 2", "&", "'&' is not an operator; write 'and'"),
        ("a > 1 || b < 2", "|", "'|' is not an operator; write 'or'"),
        ("a > 1 AND b < 2", "AND", "found the name 'AND' (keywords are lower-case)"),
        ("a == True", "True", "found the name 'True' (keywords are lower-case)"),
        (
            "a > 1 b < 2",
            "b",
            "expected 'and', 'or', 'weight' or end of expression, found the name 'b'",
        ),
        ("a b", "b", "expected a comparison (==, !=, <, <=, >, >=) after 'a', found the name 'b'"),
        ("a", END, "after 'a', found end of expression"),
        ("5 < a", "5", "found the number 5 (write the metric first"),
        ("'a' == a", "'a'", "found the string 'a' (write the metric first"),
        ("true == a", "true", "found 'true' (write the metric first"),
        ("weight > 1", "weight", "'weight' is reserved"),
        ("and == 1", "and", "expected a metric name, '(' or 'not', found 'and'"),
        ("a > 1 and", END, "expected a metric name, '(' or 'not', found end of expression"),
        ("a > 1 or or b > 2", "or b", "found 'or'"),
        ("not", END, "found end of expression"),
        (
            "a < 'x'",
            "'x'",
            "expected a number after '<' (only == and != compare strings, "
            "true and false), found the string 'x'",
        ),
        ("a >= true", "true", "expected a number after '>='"),
        ("a < b", "b", "expected a number after '<', found the name 'b'"),
        ("(a > 1", END, "expected 'and', 'or' or ')' to close the '(' at column 1, found end"),
        ("x > 0 and ((a > 1) b", "b", "to close the '(' at column 11, found the name 'b'"),
        ("a > 1)", ")", "expected 'and', 'or', 'weight' or end of expression, found ')'"),
        ("()", ")", "expected a metric name, '(' or 'not', found ')'"),
        ("db..p50 < 1", ".p50", "expected a letter, digit or '_' after '.' in 'db.', found '.'"),
        ("db. < 1", " <", "after '.' in 'db.', found a space"),
        ("db.p50. < 1", " <", "after '.' in 'db.p50.'"),
        ("db.-x < 1", "-x", "after '.' in 'db.', found '-'"),
        ("a.b.", END, "after '.' in 'a.b.', found end of expression"),
        ("x > 5ms", "ms", "unexpected 'm' right after the number 5"),
        ("x > 1.5.2", ".2", "unexpected '.' right after the number 1.5"),
        ("x > 1.", END, "expected a digit after '.' in '1.'"),
        ("x > 1.e3", "e3", "expected a digit after '.' in '1.', found 'e'"),
        ("x > 1e", END, "expected a digit after the exponent in '1e'"),
        ("x > 1e+", END, "expected a digit after the exponent in '1e+'"),
        ("x > 1e999", "1e999", "the number 1e999 is out of range"),
        ("x > -", END, "expected a digit after '-', found end of expression"),
        ("x > - 1", " 1", "expected a digit after '-', found a space"),
        ("x > .5", ".5", "a number starts with a digit: write 0.5, not .5"),
        ("x == 'abc", "'abc", "this string is never closed: add the closing '"),
        ('x == "abc\\"', '"abc', 'this string is never closed: add the closing "'),
        ("x == 'a\\nb'", "\\n", "unknown escape '\\n' in a string"),
        ("x == 'a\tb'", "\t", "control character '\\t' in a string"),
        ("x == 1 @", "@", "unexpected character '@'"),
        ("x == 1 weight", END, "expected a number after 'weight', found end of expression"),
        ("x == 1 weight 'a'", "'a'", "expected a number after 'weight', found the string"),
        ("x == 1 weight 0", "0", "a weight must be greater than 0, found 0"),
        ("x == 1 weight 0.0", "0.0", "a weight must be greater than 0, found 0.0"),
        ("x == 1 weight -2", "-2", "a weight must be greater than 0, found -2"),
        (
            "x == 1 weight 2 and y == 1",
            "and",
            "expected end of expression after 'weight 2' (the weight comes last), found 'and'",
        ),
        ("x == 1 weight 2 weight 3", "weight 3", "(the weight comes last), found 'weight'"),
        ("(x == 1 weight 2)", "weight", "expected 'and', 'or' or ')' to close the '('"),
        ("x == 1 weight 1" + "0" * 400, "1" + "0" * 400, "out of range"),
    ],
)
def test_invalid_expressions_point_at_the_column(text: str, at: str | None, message: str) -> None:
    column = len(text.rstrip()) + 1 if at is END else text.index(at) + 1
    with pytest.raises(GateSyntaxError) as info:
        parse_criterion(text)
    error = info.value
    assert isinstance(error, OrchestratorError)
    assert (error.column, error.text) == (column, text)
    assert message in error.reason
    assert str(error) == f"column {column}: {error.reason}"


def test_the_leftmost_problem_is_reported() -> None:
    text = "5 < x && y ="
    with pytest.raises(GateSyntaxError) as info:
        parse_criterion(text)
    assert info.value.column == text.index("5") + 1


def test_nesting_is_bounded() -> None:
    fine = "(" * MAX_DEPTH + "a == 1" + ")" * MAX_DEPTH
    assert expr(fine) == A
    negated: Expr = A
    for _ in range(MAX_DEPTH):
        negated = Not(negated)
    assert expr("not " * MAX_DEPTH + "a == 1") == negated
    with pytest.raises(GateSyntaxError, match="nested more than"):
        parse_criterion("not " * (MAX_DEPTH + 1) + "a == 1")
    deep = "(" * (MAX_DEPTH + 1) + "a == 1" + ")" * (MAX_DEPTH + 1)
    with pytest.raises(GateSyntaxError, match="nested more than") as info:
        parse_criterion(deep)
    assert info.value.column == len("(" * MAX_DEPTH) + 1


def test_comparisons_per_criterion_are_bounded() -> None:
    allowed = " and ".join(["a == 1"] * MAX_COMPARISONS)
    parse_criterion(allowed)
    text = allowed + " or b == 1"
    with pytest.raises(GateSyntaxError, match="split it into several criteria") as info:
        parse_criterion(text)
    assert info.value.column == text.index("b == 1") + 1


def test_a_tree_that_cannot_be_written_is_refused() -> None:
    with pytest.raises(ValueError, match="compares numbers"):
        Comparison("a", "<", "x")
    with pytest.raises(ValueError, match="not a metric name"):
        Comparison("and", "==", 1)
    with pytest.raises(ValueError, match="not a metric name"):
        Comparison("a..b", "==", 1)
    with pytest.raises(ValueError, match="finite"):
        Comparison("a", "<", float("nan"))
    with pytest.raises(ValueError, match="positive finite"):
        ParsedCriterion(A, 0.0)


# -- weights --------------------------------------------------------------------------------


def test_inline_weight() -> None:
    parsed = parse_criterion("gpu.utilization_pct > 50 weight 2")
    assert parsed == ParsedCriterion(Comparison("gpu.utilization_pct", ">", 50), 2.0)
    (compiled,) = compile_gate(GateSpec(criteria=["gpu.utilization_pct > 50 weight 2.5"]))
    assert compiled.weight == 2.5
    assert compiled.expr == Comparison("gpu.utilization_pct", ">", 50)
    assert compiled.text == "gpu.utilization_pct > 50 weight 2.5"


def test_yaml_weight_and_the_default() -> None:
    gate = GateSpec.model_validate(
        {
            "criteria": [
                "a == 1",
                {"expr": "b == 1", "weight": 0.5},
                {"expr": "c == 1 weight 3"},
                {"expr": "d == 1"},
            ]
        }
    )
    assert [c.weight for c in compile_gate(gate)] == [1.0, 0.5, 3.0, 1.0]
    assert check_gate_expressions(gate) == []


@pytest.mark.parametrize("yaml_weight", [1, 1.0, 2])
def test_inline_and_yaml_weight_together_is_an_error(yaml_weight: float) -> None:
    text = "a == 1 weight 2"
    gate = GateSpec.model_validate({"criteria": ["b == 1", {"expr": text, "weight": yaml_weight}]})
    problem = GateExpressionProblem(
        1,
        text.index("weight") + 1,
        f"weight given twice: inline 'weight' and 'weight: "
        f"{yaml_weight:g}' beside the expression; keep one",
    )
    assert check_gate_expressions(gate) == [problem]
    with pytest.raises(GateSyntaxError, match="weight given twice") as info:
        compile_gate(gate)
    assert (info.value.criterion, info.value.column) == (1, problem.column)
    assert str(info.value).startswith(f"criteria[1] {text!r}: column {problem.column}: ")
    with pytest.raises(GateSyntaxError):
        evaluate_gate(gate, {})


@pytest.mark.parametrize("weight", [0, -1, -0.5])
def test_yaml_weight_must_be_positive(weight: float) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        GateCriterion(expr="a == 1", weight=weight)


def test_infinite_yaml_weight_is_reported_without_a_column() -> None:
    gate = GateSpec(criteria=[GateCriterion(expr="a == 1", weight=float("inf"))])
    assert check_gate_expressions(gate) == [
        GateExpressionProblem(0, 0, "a weight must be a positive finite number, found inf")
    ]


def test_check_reports_every_bad_criterion_with_its_index() -> None:
    gate = GateSpec(criteria=["a == 1", "b <", GateCriterion(expr="c = 2"), "d == 1 weight 0"])
    problems = check_gate_expressions(gate)
    assert [(p.criterion, p.column) for p in problems] == [
        (1, len("b <") + 1),
        (2, "c = 2".index("=") + 1),
        (3, "d == 1 weight 0".index("0") + 1),
    ]
    assert problems[0].message == "expected a number after '<', found end of expression"


def test_the_example_plan_gates_are_sound() -> None:
    plan = yaml.safe_load(EXAMPLE.read_text())
    gates = [GateSpec.model_validate(s["gate"]) for s in plan["streams"] if "gate" in s]
    assert gates
    for gate in gates:
        assert check_gate_expressions(gate) == []
        assert compile_gate(gate)


# -- evaluation -----------------------------------------------------------------------------


def test_confidence_is_the_weighted_share_met() -> None:
    gate = GateSpec.model_validate(
        {
            "threshold": 0.95,
            "criteria": [
                "redis.noauth_errors == 0",
                {"expr": "redis.latency_ms.p50 < 5", "weight": 0.5},
            ],
        }
    )
    both = evaluate_gate(
        gate, {"redis.noauth_errors": measured(0), "redis.latency_ms.p50": measured(3.2)}
    )
    assert (both.confidence, both.passed) == (1.0, True)
    slow = evaluate_gate(
        gate, {"redis.noauth_errors": measured(0), "redis.latency_ms.p50": measured(8.0)}
    )
    assert slow.confidence == pytest.approx(1 / 1.5)
    assert not slow.passed
    first, second = slow.criteria
    assert (first.verdict, first.reason) == (Verdict.MET, "redis.noauth_errors = 0 == 0: met")
    assert (second.verdict, second.weight) == (Verdict.NOT_MET, 0.5)
    assert second.reason == "redis.latency_ms.p50 = 8, not < 5: not met"


def test_reason_for_a_met_criterion_reads_naturally() -> None:
    result = evaluate_gate(
        GateSpec(criteria=["db.response_ms.p50 < 100"]), {"db.response_ms.p50": measured(84.0)}
    )
    assert result.criteria[0].reason == "db.response_ms.p50 = 84 < 100: met"


def test_a_missing_metric_counts_as_failed_and_says_so() -> None:
    gate = GateSpec(threshold=0.5, criteria=["gpu.utilization_pct > 50", "gpu.memory_pct > 70"])
    result = evaluate_gate(gate, {"gpu.memory_pct": measured(75)})
    missing, present = result.criteria
    assert missing.verdict is Verdict.NOT_MEASURED
    assert missing.reason == "gpu.utilization_pct was not measured by any step"
    assert present.verdict is Verdict.MET
    assert (result.confidence, result.passed) == (0.5, True)
    assert evaluate_gate(gate, {}).confidence == 0.0


def test_require_verified_ignores_claimed_values() -> None:
    criteria: list[GateCriterion | str] = ["redis.noauth_errors == 0", "redis.auth_ok == true"]
    metrics = {"redis.noauth_errors": measured(0, verified=False), "redis.auth_ok": measured(True)}
    lenient = evaluate_gate(GateSpec(criteria=criteria), metrics)
    assert lenient.confidence == 1.0
    strict = evaluate_gate(GateSpec(criteria=criteria, require_verified=True), metrics)
    claimed, verified = strict.criteria
    assert claimed.verdict is Verdict.NOT_MEASURED
    assert claimed.reason == (
        "redis.noauth_errors = 0 was only claimed (by agent:claimer), verified required"
    )
    assert verified.verdict is Verdict.MET
    assert (strict.confidence, strict.passed) == (0.5, False)


def test_string_comparisons() -> None:
    metrics = {"redis.mode": measured("cluster")}
    verdicts = {
        text: evaluate_gate(GateSpec(criteria=[text]), metrics).criteria[0].verdict
        for text in [
            "redis.mode == 'cluster'",
            "redis.mode != 'cluster'",
            'redis.mode == "standalone"',
            "redis.mode != 'standalone'",
        ]
    }
    assert list(verdicts.values()) == [Verdict.MET, Verdict.NOT_MET, Verdict.NOT_MET, Verdict.MET]


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        (
            "redis.mode < 5",
            "cluster",
            "redis.mode = \"cluster\": cannot compare a string with a number using '<': not met",
        ),
        ("redis.mode == 5", "cluster", "cannot compare a string with a number using '=='"),
        ("redis.port == 'x'", 6379, "cannot compare a number with a string using '=='"),
        ("redis.auth_ok > 0", True, "cannot compare true/false with a number using '>'"),
        ("redis.auth_ok == 1", True, "cannot compare true/false with a number"),
        ("redis.port != true", 1, "cannot compare a number with true/false"),
        ("gpu.util > 50", float("nan"), "gpu.util = nan is not a number: not met"),
    ],
)
def test_mismatched_types_are_not_met_with_a_reason(text: str, value: Any, reason: str) -> None:
    metric = text.split()[0]
    result = evaluate_gate(GateSpec(criteria=[text]), {metric: measured(value)})
    (criterion,) = result.criteria
    assert criterion.verdict is Verdict.NOT_MET
    assert reason in criterion.reason
    assert not criterion.comparisons[0].comparable


def test_a_type_error_is_never_rescued_by_or_or_not() -> None:
    metrics = {"ok": measured(1), "mode": measured("x")}
    for text in ["ok == 1 or mode > 1", "not mode > 1", "not (ok == 1 and mode > 1)"]:
        (criterion,) = evaluate_gate(GateSpec(criteria=[text]), metrics).criteria
        assert criterion.verdict is Verdict.NOT_MET, text


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("a == 1 or b == 1 and c == 1", Verdict.MET),  # or binds looser than and
        ("(a == 1 or b == 1) and c == 1", Verdict.NOT_MET),
        ("c == 1 and missing == 1", Verdict.NOT_MET),  # decided whatever missing is
        ("a == 1 and missing == 1", Verdict.NOT_MEASURED),
        ("a == 1 or missing == 1", Verdict.MET),
        ("c == 1 or missing == 1", Verdict.NOT_MEASURED),
        ("not missing == 1", Verdict.NOT_MEASURED),
        ("not c == 1", Verdict.MET),
        ("not (a == 1 and c == 1)", Verdict.MET),
    ],
)
def test_and_or_not_combine_three_ways(text: str, verdict: Verdict) -> None:
    metrics = {"a": measured(1), "b": measured(1), "c": measured(0)}
    (criterion,) = evaluate_gate(GateSpec(criteria=[text]), metrics).criteria
    assert criterion.verdict is verdict


def test_a_compound_criterion_explains_every_comparison() -> None:
    text = "db.p50 < 100 and db.errors == 0"
    (criterion,) = evaluate_gate(GateSpec(criteria=[text]), {"db.p50": measured(120)}).criteria
    assert criterion.reason == (
        "db.p50 = 120, not < 100: not met; db.errors was not measured by any step"
    )
    assert [c.comparison.metric for c in criterion.comparisons] == ["db.p50", "db.errors"]


def test_threshold_is_compared_exactly() -> None:
    criteria: list[GateCriterion | str] = [
        GateCriterion(expr="a == 1", weight=0.1),
        GateCriterion(expr="b == 1", weight=0.2),
        GateCriterion(expr="c == 1", weight=0.7),
    ]
    result = evaluate_gate(
        GateSpec(threshold=0.3, criteria=criteria), {"a": measured(1), "b": measured(1)}
    )
    assert result.passed


def test_a_gate_without_criteria_has_no_confidence() -> None:
    result = evaluate_gate(GateSpec(threshold=0.5), {})
    assert (result.confidence, result.passed, result.criteria) == (0.0, False, ())


def test_gate_evaluated_event_is_json() -> None:
    gate = GateSpec(threshold=0.8, criteria=["a == 1 weight 3", "b.c < 2 or d == 'x'"])
    result = evaluate_gate(gate, {"a": measured(1), "b.c": measured(5, verified=False)})
    event = result.as_event()
    assert json.loads(json.dumps(event, allow_nan=False)) == event
    assert event == {
        "passed": False,
        "confidence": 0.75,
        "threshold": 0.8,
        "require_verified": False,
        "criteria_met": 1,
        "criteria": [
            {
                "expr": "a == 1 weight 3",
                "weight": 3.0,
                "verdict": "met",
                "reason": "a = 1 == 1: met",
                "values": [{"metric": "a", "value": 1, "verified": True, "source": "step:probe"}],
            },
            {
                "expr": "b.c < 2 or d == 'x'",
                "weight": 1.0,
                "verdict": "not measured",
                "reason": "b.c = 5, not < 2: not met; d was not measured by any step",
                "values": [
                    {"metric": "b.c", "value": 5, "verified": False, "source": "agent:claimer"},
                    {"metric": "d", "value": None, "verified": False, "source": None},
                ],
            },
        ],
    }


# -- properties -----------------------------------------------------------------------------

_metric_names = st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_-]{0,6}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,6}){0,3}", fullmatch=True
).filter(lambda name: name not in RESERVED_WORDS)
_numbers = st.one_of(
    st.integers(-(10**30), 10**30), st.floats(allow_nan=False, allow_infinity=False)
)
_strings = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
_comparisons = st.one_of(
    st.builds(Comparison, _metric_names, st.sampled_from(["<", "<=", ">", ">="]), _numbers),
    st.builds(
        Comparison,
        _metric_names,
        st.sampled_from(["==", "!="]),
        st.one_of(_numbers, _strings, st.booleans()),
    ),
)


def _trees(leaves: st.SearchStrategy[Comparison], max_leaves: int) -> st.SearchStrategy[Expr]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(And, children, children),
            st.builds(Or, children, children),
            st.builds(Not, children),
        ),
        max_leaves=max_leaves,
    )


_criteria = st.builds(
    ParsedCriterion,
    _trees(_comparisons, 12),
    st.none() | st.floats(min_value=0, exclude_min=True, allow_infinity=False),
)


@given(_criteria)
def test_round_trip_through_canonical_text(criterion: ParsedCriterion) -> None:
    text = to_text(criterion)
    again = parse_criterion(text)
    assert again == criterion
    assert to_text(again) == text  # the same types too: 1 and 1.0 are told apart
    assert parse_criterion(to_text(criterion.expr)).expr == criterion.expr


_PIECES = [*"ab.1_-e+=<>!()'\"\\ \t", "and", "or", "not", "weight", "true", "x.y", "==", "<="]


@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=2), max_size=20).map("".join))
def test_any_text_parses_or_fails_with_a_column(text: str) -> None:
    try:
        parsed = parse_criterion(text)
    except GateSyntaxError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        assert parse_criterion(to_text(parsed)) == parsed


_POOL = ["m.a", "m.b", "m.c", "m.d"]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_small = st.integers(-3, 3)
_pool_leaves = st.builds(Comparison, st.sampled_from(_POOL), st.sampled_from(list(_OPS)), _small)
_samples = st.dictionaries(
    st.sampled_from(_POOL),
    st.builds(MetricValue, st.one_of(_small, _small.map(float)), st.booleans(), st.just("s")),
)


def _leaves(node: Expr) -> list[Comparison]:
    if isinstance(node, Comparison):
        return [node]
    if isinstance(node, Not):
        return _leaves(node.operand)
    return _leaves(node.left) + _leaves(node.right)


def _classic(node: Expr, values: Iterator[bool]) -> bool:
    """Plain two-valued logic; ``values`` gives each leaf occurrence, left to right, its
    truth."""
    if isinstance(node, Comparison):
        return next(values)
    if isinstance(node, Not):
        return not _classic(node.operand, values)
    left = _classic(node.left, values)
    right = _classic(node.right, values)
    return left and right if isinstance(node, And) else left or right


def _brute_force_met(node: Expr, metrics: Mapping[str, MetricValue], verified_only: bool) -> bool:
    """Met when it is true however every unmeasured comparison turns out."""
    known: list[bool | None] = []
    for leaf in _leaves(node):
        sample = metrics.get(leaf.metric)
        if sample is None or (verified_only and not sample.verified):
            known.append(None)
        else:
            known.append(_OPS[leaf.op](sample.value, leaf.value))
    unknown = [i for i, k in enumerate(known) if k is None]
    for guesses in itertools.product([False, True], repeat=len(unknown)):
        values = list(known)
        for i, guess in zip(unknown, guesses, strict=True):
            values[i] = guess
        if not _classic(node, iter(bool(v) for v in values)):
            return False
    return True


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(_trees(_pool_leaves, 5), st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0])), max_size=5
    ),
    _samples,
    st.sampled_from([0.0, 0.25, 0.5, 0.6, 2 / 3, 0.75, 1.0]),
    st.booleans(),
)
def test_confidence_equals_a_brute_force_count(
    criteria: list[tuple[Expr, float]],
    metrics: dict[str, MetricValue],
    threshold: float,
    verified_only: bool,
) -> None:
    gate = GateSpec(
        threshold=threshold,
        require_verified=verified_only,
        criteria=[GateCriterion(expr=to_text(tree), weight=weight) for tree, weight in criteria],
    )
    result = evaluate_gate(gate, metrics)
    met = [_brute_force_met(tree, metrics, verified_only) for tree, _ in criteria]
    assert [r.verdict is Verdict.MET for r in result.criteria] == met
    total = sum(Fraction(w) for _, w in criteria)
    share = (
        sum(Fraction(w) for (_, w), ok in zip(criteria, met, strict=True) if ok) / total
        if total
        else Fraction(0)
    )
    assert result.confidence == float(share)
    assert result.passed == (share >= Fraction(threshold))
