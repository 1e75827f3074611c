"""``orchestrator analyze``'s numbers: the Beta posterior from a known history, exactly; the
makespan and critical path of plans whose optimum is known by hand (the real scheduler on a
virtual clock); ``min_confidence``; and a run's evidence read back from the store.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from foundation.errors import UsageError
from orchestrator.analysis import (
    Beta,
    PlanAnalysis,
    analysis_json,
    analyze,
    beta_cdf,
    check_min_confidence,
    estimate_streams,
    load_history,
    percentile,
    posterior,
    render_analysis,
)
from orchestrator.evidence_view import (
    evidence_from_events,
    evidence_json,
    load_evidence,
    render_evidence,
)
from orchestrator.scheduler import RunStatus
from orchestrator.store import HistoryRecord, RunRecord, open_store
from streams.model import Plan
from tests.helpers import plan_from, run_plan, sleep_step, stream

MINUTE = 60.0
CAPS = {"cpu": 1, "io": 3, "network": 2, "light": None}


def history(
    stream_spec: Any, outcomes: list[tuple[str, float]], *, plan: str = "past"
) -> list[HistoryRecord]:
    """Recorded verdicts of ``stream_spec``: (status, duration_s) each, a day apart."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        HistoryRecord(
            signature=stream_spec.signature(),
            run_id=f"run-{n}",
            stream=stream_spec.id,
            plan=plan,
            methodology=stream_spec.methodology,
            status=status,
            duration_s=duration_s,
            gate_confidence=None,
            finished_at=start + timedelta(days=n),
        )
        for n, (status, duration_s) in enumerate(outcomes)
    ]


# -- the posterior ----------------------------------------------------------------------------


def test_the_posterior_from_a_known_history_is_exact() -> None:
    # The plan's 95% worth 4 runs, then 3 successes and 1 failure: Beta(3.8 + 3, 0.2 + 1).
    beta = posterior(0.95, successes=3, failures=1)
    assert (beta.alpha, beta.beta) == (Fraction("6.8"), Fraction("1.2"))
    assert (float(beta.alpha), float(beta.beta)) == (6.8, 1.2)
    assert beta.mean == 0.85
    # No history: the plan's own estimate. No prior: uniform, Beta(1, 1), plus the counts.
    assert posterior(0.78, 0, 0).mean == 0.78
    assert posterior(None, 0, 0) == posterior(None, 0, 0, prior_weight=10)
    assert posterior(None, 3, 1) == Beta(Fraction(4), Fraction(2))
    assert posterior(None, 3, 1).mean == 4 / 6
    # A heavier prior moves less: 0.95 worth 16 runs, same history -> 18.2 / 20.
    assert posterior(0.95, 3, 1, prior_weight=16).mean == 0.91


def test_the_credible_interval_matches_closed_forms() -> None:
    low, high = posterior(None, 0, 0).interval(0.9)  # uniform
    assert [low, high] == pytest.approx([0.05, 0.95], abs=1e-9)
    low, high = posterior(None, 1, 0).interval(0.9)  # Beta(2, 1): CDF x^2
    assert [low, high] == pytest.approx([math.sqrt(0.05), math.sqrt(0.95)], abs=1e-9)
    for x, a, b in [(0.3, 2.5, 3.5), (0.9, 6.8, 1.2), (0.01, 0.5, 0.5)]:
        assert beta_cdf(x, a, b) == pytest.approx(1 - beta_cdf(1 - x, b, a), abs=1e-12)
    assert beta_cdf(0.5, 3.0, 1.0) == pytest.approx(0.125, abs=1e-12)  # Beta(a, 1): x^a
    # A prior of exactly 1 that nothing contradicts is certain.
    assert posterior(1.0, 5, 0).interval() == (1.0, 1.0)
    with pytest.raises(ValueError, match="within"):
        posterior(1.5, 0, 0)


def test_each_stream_rests_on_its_signatures_history() -> None:
    plan = plan_from(
        [
            stream(
                "redis-auth",
                [sleep_step("patch")],
                success_probability=0.95,
                methodology="patch",
                timeline="15m..30m",
            ),
            stream("gpu", [sleep_step("tune")], success_probability=0.78, timeline="45m..1h"),
        ]
    )
    redis_auth = plan.streams[0]
    past = history(
        redis_auth,
        [("succeeded", 60), ("failed", 10), ("succeeded", 300), ("succeeded", 120),
         ("succeeded", 240), ("succeeded", 180)],
    )  # fmt: skip
    estimates = estimate_streams(plan, {redis_auth.signature(): past})
    first, second = estimates
    assert (first.successes, first.failures, first.runs) == (5, 1, 6)
    assert first.posterior == posterior(0.95, 5, 1)
    assert first.p == pytest.approx((3.8 + 5) / 10) and first.risk == pytest.approx(0.12)
    # Durations of successful runs only (a failure stops early): 60, 120, 180, 240, 300.
    assert (first.timeline.expected_s, first.timeline.high_s) == (180.0, 276.0)
    assert (first.timeline.source, first.timeline.runs) == ("history", 5)
    # No history: the plan's own numbers.
    assert (second.p, second.runs) == (0.78, 0)
    assert (second.timeline.expected_s, second.timeline.high_s) == (45 * MINUTE, 60 * MINUTE)
    assert second.timeline.source == "plan"
    assert percentile([5.0], 0.9) == 5.0


# -- makespan and critical path ------------------------------------------------------------------


def cpu_contention_plan() -> Plan:
    """Two streams each needing the single cpu slot for 10 minutes, and a third independent
    5-minute stream: the optimum is 20 minutes, the cpu-bound steps one after the other."""
    return plan_from(
        [
            stream("a", [sleep_step("a1", agent="cpu-agent")], timeline="10m..30m"),
            stream("b", [sleep_step("b1", agent="cpu-agent")], timeline="10m..30m"),
            stream("c", [sleep_step("c1"), sleep_step("c2")], timeline="5m..30m"),
        ],
        caps=CAPS,
    )


def test_makespan_of_streams_contending_for_one_slot_is_known_by_hand() -> None:
    result = analyze(cpu_contention_plan(), {})
    schedule = result.schedule
    assert schedule.makespan_s == 20 * MINUTE
    path = [(p.stream, p.step, p.started_s, p.finished_s) for p in schedule.critical_path]
    assert sorted(path) in (
        [("a", "a1", 0.0, 600.0), ("b", "b1", 600.0, 1200.0)],
        [("a", "a1", 600.0, 1200.0), ("b", "b1", 0.0, 600.0)],
    )
    first, second = schedule.critical_path
    assert first.after is None
    assert second.after == f"class cpu slot held by {first.stream}/{first.step}"
    # The 5-minute stream is spread evenly over its two steps.
    assert schedule.durations[("c", "c1")] == schedule.durations[("c", "c2")] == 150.0
    assert schedule.over_limit == ()


def test_history_changes_the_estimate_and_so_the_makespan() -> None:
    plan = cpu_contention_plan()
    a, _, c = plan.streams
    past = {
        a.signature(): history(a, [("succeeded", 20 * MINUTE)] * 3),
        c.signature(): history(c, [("succeeded", 40 * MINUTE), ("failed", 1.0)]),
    }
    result = analyze(plan, past)
    # a now takes 20 minutes on the one cpu slot, b 10: 30 minutes. c (40) is longer still.
    assert result.schedule.makespan_s == 40 * MINUTE
    assert [(p.stream, p.step) for p in result.schedule.critical_path] == [
        ("c", "c1"),
        ("c", "c2"),
    ]
    assert result.schedule.critical_path[1].after == "needs c/c1"
    cpu_done = max(t.finished_s for t in result.schedule.steps if t.stream in ("a", "b"))
    assert cpu_done == 30 * MINUTE


def test_locks_needs_and_depends_on_set_the_critical_path() -> None:
    # x: x1 (5m) then x2 (5m, redis); y: y1 (8m, redis); z after x: z1 (3m). Unlimited class.
    # y1 holds redis 0-8m, so x2 runs 8-13m, and z 13-16m.
    plan = plan_from(
        [
            stream("x", [sleep_step("x1"), sleep_step("x2", locks=["redis"])], timeline="10m"),
            stream("y", [sleep_step("y1", locks=["redis"])], timeline="8m"),
            stream("z", [sleep_step("z1")], timeline="3m", depends_on=["x"]),
        ]
    )
    schedule = analyze(plan, {}).schedule
    assert schedule.makespan_s == 16 * MINUTE
    assert [(p.stream, p.step, p.started_s, p.finished_s, p.after)
            for p in schedule.critical_path] == [
        ("y", "y1", 0.0, 480.0, None),
        ("x", "x2", 480.0, 780.0, "lock redis held by y/y1"),
        ("z", "z1", 780.0, 960.0, "stream x (depends_on)"),
    ]  # fmt: skip
    # x's 10 minutes include 3 spent queueing for redis: past its limit of 10m.
    assert schedule.over_limit == ("x",)


def test_the_simulation_judges_nothing_and_rolls_nothing_back() -> None:
    # A gate that could never pass, mandatory evidence nobody collects, a rollback and a
    # failing step: none of it acts in the simulation, which only measures time.
    plan = plan_from(
        [
            stream(
                "gated",
                [sleep_step("work", seconds=1.0) | {"with": {"seconds": 1, "fail": True},
                                                   "evidence": ["proof"]}],
                timeline="2m",
                gate={"threshold": 1.0, "criteria": ["slept_s > 1000000"]},
                evidence=[{"id": "proof"}],
                rollback={"steps": [sleep_step("undo-it", seconds=1000.0)]},
            ),
        ]
    )  # fmt: skip
    schedule = analyze(plan, {}).schedule
    assert schedule.makespan_s == 2 * MINUTE
    assert [(p.stream, p.step) for p in schedule.critical_path] == [("gated", "work")]


def test_sleep_steps_share_the_estimate_in_proportion() -> None:
    plan = plan_from(
        [stream("s", [sleep_step("short", seconds=1.0), sleep_step("long", seconds=3.0)],
                timeline="8m")]
    )  # fmt: skip
    schedule = analyze(plan, {}).schedule
    assert schedule.durations == {("s", "short"): 120.0, ("s", "long"): 360.0}
    assert schedule.makespan_s == 8 * MINUTE


# -- min_confidence -------------------------------------------------------------------------------


def test_min_confidence_names_the_stream_its_probability_and_what_it_rests_on() -> None:
    plan = plan_from(
        [
            stream("solid", [sleep_step("a")], success_probability=0.95),
            stream("shaky", [sleep_step("b")], success_probability=0.78),
            stream("unknown", [sleep_step("c")]),
            stream("slipping", [sleep_step("d")], success_probability=0.95),
            stream("close", [sleep_step("e")], success_probability=0.795),
        ],
        min_confidence=0.8,
    )
    slipping = plan.streams[3]
    past = {slipping.signature(): history(slipping, [("failed", 1.0), ("failed", 1.0),
                                                     ("succeeded", 1.0)])}  # fmt: skip
    problems = check_min_confidence(plan, estimate_streams(plan, past))
    assert problems == [
        "stream shaky: predicted success probability 78% is below the plan's min_confidence "
        "80% (the plan's 78%, and no recorded runs)",
        "stream unknown: predicted success probability 50% is below the plan's "
        "min_confidence 80% (no success_probability in the plan, so an even prior, and no "
        "recorded runs)",
        "stream slipping: predicted success probability 69% is below the plan's "
        "min_confidence 80% (the plan's 95% updated by 3 recorded runs: 1 succeeded, "
        "2 failed; runs of plan past, 2026-11-01..2026-11-03)",
        "stream close: predicted success probability 79.5% is below the plan's "
        "min_confidence 80.0% (the plan's 80%, and no recorded runs)",
    ]
    assert check_min_confidence(plan.model_copy(update={"min_confidence": None}), []) == []


# -- rendering -------------------------------------------------------------------------------------


def test_the_report_reads_like_the_decision_matrix_and_its_json_is_complete() -> None:
    plan = plan_from(
        [
            stream("redis-auth", [sleep_step("a", agent="cpu-agent")], title="Redis "
                   "Authentication", success_probability=0.95, methodology="patch",
                   timeline="15m..30m"),
            stream("gpu", [sleep_step("b", agent="cpu-agent")], title="GPU Optimization",
                   success_probability=0.78, methodology="configuration", timeline="45m..1h"),
        ],
        caps=CAPS,
        min_confidence=0.8,
    )  # fmt: skip
    result: PlanAnalysis = analyze(plan, {})
    text = render_analysis(result)
    lines = text.splitlines()
    assert lines[0].split() == ["Focus", "Area", "Success", "Probability", "Predicted", "Failure",
                                "Declared", "Risk", "Timeline",
                                "Methodology", "Runs"]  # fmt: skip
    assert lines[1].startswith("Redis Authentication")
    assert "95% (" in lines[1] and "Low (5%)" in lines[1] and "15m-30m (plan)" in lines[1]
    assert lines[2].split()[-2:] == ["configuration", "0"] and "Medium (22%)" in lines[2]
    assert "Average success probability: 86%" in text  # (0.95 + 0.78) / 2 = 86.5%
    assert "Expected makespan: 1h" in text  # 15m then 45m on the one cpu slot
    assert "after class cpu slot held by" in text
    assert "min_confidence 80%: refused without --force" in text
    assert "stream gpu: predicted success probability 78%" in text

    data = json.loads(json.dumps(analysis_json(result)))
    assert data["makespan_s"] == 3600.0
    assert [s["stream"] for s in data["streams"]] == ["redis-auth", "gpu"]
    redis = data["streams"][0]
    assert redis["success_probability"] == 0.95 and redis["risk"] == 0.05
    assert (redis["alpha"], redis["beta"], redis["runs"]) == (3.8, 0.2, 0)
    assert redis["timeline"] == {"expected_s": 900.0, "high_s": 1800.0, "source": "plan",
                                 "runs": 0}  # fmt: skip
    assert [p["step"] for p in data["critical_path"]] in (["a", "b"], ["b", "a"])
    assert data["problems"] == list(result.problems) and len(data["problems"]) == 1


# -- from the store: history of real runs, and their evidence ---------------------------------


def _command(sid: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "agent": "cpu-agent", "action": "command",
            "with": {"argv": ["sh", "-c", script], "parse_metrics": True}, **extra}  # fmt: skip


EVIDENCE_PLAN = plan_from(
    [
        stream(
            "db",
            [
                _command("measure", "echo 'db.response_ms.p50=84'; echo second; echo third",
                         evidence=["timings"]),
                sleep_step("settle", seconds=0.01),
            ],
            success_probability=0.8,
            methodology="optimization",
            gate={"threshold": 1.0, "criteria": ["db.response_ms.p50 < 100"]},
            evidence=[{"id": "timings", "verified": True}],
        ),
        stream("broken", [_command("boom", "echo oops; exit 3")], success_probability=0.9),
    ],
    caps=CAPS,
)  # fmt: skip


async def _run_and_store(state_dir: Path, run_id: str) -> list[dict[str, Any]]:
    result, events = await run_plan(EVIDENCE_PLAN, workdir=state_dir)
    assert result.status is RunStatus.FAILED  # "broken" fails; "db" passes its gate
    events = [{**e, "run_id": run_id} for e in events]
    async with open_store(None, state_dir=state_dir) as store:
        await store.create_run(
            RunRecord(run_id=run_id, plan=EVIDENCE_PLAN.plan, plan_source="", workdir=state_dir)
        )
        await store.append_events(run_id, events)
    return events


async def test_analyze_reads_the_history_that_runs_recorded(tmp_path: Path) -> None:
    for n in range(2):
        await _run_and_store(tmp_path, f"run-{n}")
    async with open_store(None, state_dir=tmp_path) as store:
        past = await load_history(store, EVIDENCE_PLAN)
    db, broken = estimate_streams(EVIDENCE_PLAN, past)
    assert (db.successes, db.failures) == (2, 0)
    assert db.p == pytest.approx((0.8 * 4 + 2) / 6)
    assert (broken.successes, broken.failures) == (0, 2)
    assert broken.p == pytest.approx((0.9 * 4) / 6)
    assert db.timeline.source == "history" and db.timeline.runs == 2
    assert broken.timeline.source == "failed runs"


async def test_evidence_of_a_real_run_is_listed_and_given_as_json(tmp_path: Path) -> None:
    events = await _run_and_store(tmp_path, "run-e")
    async with open_store(None, state_dir=tmp_path) as store:
        report = await load_evidence(store, "run-e")
        only_db = await load_evidence(store, "run-e", stream="db")
        with pytest.raises(UsageError, match="no run 'nope'"):
            await load_evidence(store, "nope")
        with pytest.raises(UsageError, match=r"has no stream 'ghost'.*db, broken"):
            await load_evidence(store, "run-e", stream="ghost")
    assert report == evidence_from_events("run-e", events)
    assert [(e.stream, e.step) for e in report.evidence] == [("db", "measure"),
                                                              ("broken", "boom")]  # fmt: skip
    measure = report.evidence[0]
    output = b"db.response_ms.p50=84\nsecond\nthird\n"
    assert measure.sha256 == hashlib.sha256(output).hexdigest()
    assert (measure.verified, measure.source, measure.provides) == (True, "command", ("timings",))
    assert measure.metrics["db.response_ms.p50"] == 84.0

    text = render_evidence(report, excerpt_lines=2)
    assert text.startswith("run run-e: 2 pieces of evidence, 1 gate\n")
    assert "stream db\n  gate passed, confidence 100% (threshold 100%), 1 of 1 criteria met" in text
    assert "[db.response_ms.p50=84 (step measure (verified))]" in text
    assert "    metrics:  db.response_ms.p50=84, exit_code=0\n" in text
    assert "  step measure (attempt 1, succeeded), provides timings" in text
    assert "    source:   command, verified" in text
    assert f"    sha256:   {measure.sha256}" in text
    assert "    excerpt:  | db.response_ms.p50=84\n              | second\n" in text
    assert "(1 more line)" in text
    assert "stream broken\n  step boom (attempt 1, failed)" in text

    assert [e.stream for e in only_db.evidence] == ["db"] and len(only_db.gates) == 1
    data = json.loads(json.dumps(evidence_json(report)))
    assert [e["step"] for e in data["evidence"]] == ["measure", "boom"]
    assert data["gates"][0]["passed"] is True and data["gates"][0]["confidence"] == 1.0
    assert data["gates"][0]["criteria"][0]["expr"] == "db.response_ms.p50 < 100"


def test_a_run_without_evidence_says_so() -> None:
    report = evidence_from_events("r", [{"event": "run_started", "seq": 1}])
    assert render_evidence(report).endswith("no evidence was collected and no gate was evaluated\n")
