"""Predictions from service times, calibrated against outcomes, resting on honest history.

The issue's example made concrete: three one-second streams on one slot really take 3 s; fed
back as wall times (which include waiting for the slot) the simulation predicted 6 s (the
issue saw 3 s -> 8.4 s); from service times it predicts the 3 s that happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents import builtin_registry
from orchestrator.analysis import analyze, estimate_streams, load_history
from orchestrator.analysis.calibration import RealRun, calibrate, render_calibration
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunStatus, Scheduler
from orchestrator.store import HistoryRecord, RunRecord, open_store
from streams.model import Plan
from tests.helpers import on_virtual_clock, plan_from, sleep_step, stream

ROOT = Path(__file__).resolve().parents[2]

ONE_SLOT = plan_from(
    [stream(sid, [sleep_step("work", agent="cpu-agent", seconds=1.0)]) for sid in "abc"],
    caps={"cpu": 1, "io": 1, "network": 1, "light": None},
)


async def _run_on_virtual_clock(plan: Plan) -> tuple[float, list[dict[str, Any]]]:
    sink = MemorySink()
    scheduler = Scheduler(
        plan,
        run_id="real",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("real", [sink]),
    )
    start = anyio.current_time()
    result = await scheduler.run()
    assert result.status is RunStatus.SUCCEEDED
    return anyio.current_time() - start, sink.events


async def _record(state_dir: Path, plan: Plan, events: list[dict[str, Any]]) -> None:
    async with open_store(None, state_dir=state_dir) as store:
        await store.create_run(
            RunRecord(run_id="real", plan=plan.plan, plan_source="", workdir=state_dir)
        )
        await store.append_events("real", [{**e, "run_id": "real"} for e in events])


async def _history(state_dir: Path, plan: Plan) -> Any:
    async with open_store(None, state_dir=state_dir) as store:
        return await load_history(store, plan)


def test_a_plan_is_predicted_to_take_what_it_took_not_contention_twice(tmp_path: Path) -> None:
    real_s, events = on_virtual_clock(_run_on_virtual_clock, ONE_SLOT)
    assert real_s == pytest.approx(3.0)  # three 1 s steps, one at a time
    anyio.run(_record, tmp_path, ONE_SLOT, events)
    history = anyio.run(_history, tmp_path, ONE_SLOT)
    rows = sorted((r for rs in history.values() for r in rs), key=lambda r: r.stream)
    assert [r.service_s for r in rows] == pytest.approx([1.0, 1.0, 1.0])
    assert sorted(r.queued_s for r in rows) == pytest.approx([0.0, 1.0, 2.0])

    predicted = analyze(ONE_SLOT, history).schedule.makespan_s
    assert predicted == pytest.approx(real_s)

    # What the analysis did before: each stream's wall time (service + queueing) fed back
    # into a simulation that queues them again.
    walls = {
        sig: [
            dataclasses.replace(
                r, service_s=None, duration_s=(r.service_s or 0) + (r.queued_s or 0)
            )
            for r in rs
        ]
        for sig, rs in history.items()
    }
    assert analyze(ONE_SLOT, walls).schedule.makespan_s == pytest.approx(6.0)


def _verdicts(plan: Plan, sid: str, outcomes: str, *, plan_name: str) -> list[HistoryRecord]:
    spec = next(s for s in plan.streams if s.id == sid)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    return [
        HistoryRecord(
            signature=spec.signature(),
            run_id=f"{plan_name}-{n}",
            stream=sid,
            plan=plan_name,
            methodology=None,
            status="succeeded" if o == "s" else "failed",
            duration_s=1.0,
            gate_confidence=None,
            finished_at=start + timedelta(days=n),
            service_s=1.0,
            queued_s=0.0,
        )
        for n, o in enumerate(outcomes)
    ]


def test_calibration_scores_each_verdict_by_the_prediction_made_before_it() -> None:
    plan = plan_from(
        [stream("a", [sleep_step("w")], success_probability=0.5)], caps={"light": None}
    )
    sig = plan.streams[0].signature()
    history = {sig: _verdicts(plan, "a", "ssf", plan_name="test")}  # Nov 1, 2, 3
    runs = [
        RealRun("r2", datetime(2026, 11, 3, 12, tzinfo=UTC), 2.0),
        RealRun("r1", datetime(2026, 11, 1, 12, tzinfo=UTC), 4.0),
    ]
    seen: list[int] = []

    def makespan_for(before: Mapping[str, Sequence[HistoryRecord]]) -> float:
        seen.append(len(before[sig]))
        return 3.0

    scored = calibrate(
        plan,
        history,
        prior_weight=2.0,
        predicted_makespan_s=3.0,
        runs=runs,
        makespan_for=makespan_for,
    )
    # Beta(1, 1) -> predicts 1/2, then (1+1)/3 = 2/3, then (1+2)/4 = 3/4.
    assert [p.predicted for p in scored.predictions] == pytest.approx([0.5, 2 / 3, 0.75])
    expected = ((0.5 - 1) ** 2 + (2 / 3 - 1) ** 2 + (0.75 - 0) ** 2) / 3
    assert scored.brier == pytest.approx(expected)
    assert [(round(b.low, 1), b.count, b.observed) for b in scored.buckets] == [
        (0.5, 1, 1.0),
        (0.6, 1, 1.0),
        (0.7, 1, 0.0),
    ]
    assert seen == [3, 1]  # each run's prediction saw only the verdicts before it started
    assert scored.makespan_mae_s == pytest.approx(1.0)
    text = render_calibration(scored)
    assert f"Brier score: {expected:.3f} over 3 verdicts" in text
    assert "r1  real 4s  predicted 3s  predicted/real 0.75" in text


def test_history_scope_and_what_a_prediction_rests_on() -> None:
    plan = plan_from(
        [stream("a", [sleep_step("w")], success_probability=0.9)], caps={"light": None}
    )
    sig = plan.streams[0].signature()
    mixed = {
        sig: _verdicts(plan, "a", "ff", plan_name="copy")
        + _verdicts(plan, "a", "s", plan_name="test")
    }
    (everything,) = estimate_streams(plan, mixed)
    assert (everything.runs, everything.plans) == (3, ("copy", "test"))
    assert (everything.first_at, everything.last_at) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 2, tzinfo=UTC),
    )
    own = {sig: [r for r in mixed[sig] if r.plan == plan.plan]}
    (scoped,) = estimate_streams(plan, own)
    assert (scoped.runs, scoped.failures, scoped.plans) == (1, 0, ("test",))


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCH_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def test_analyze_shows_declared_risk_scope_and_calibration(tmp_path: Path) -> None:
    shown = _cli("analyze", "examples/phase2.yaml", "--calibration", state=tmp_path)
    assert shown.returncode == 0, shown.stderr
    header, redis = shown.stdout.splitlines()[:2]
    assert "Predicted Failure" in header and "Declared Risk" in header
    # The seed: success 95% (so a predicted failure of 5%), declared "Low (15%)".
    assert "Low (5%)" in redis and "Low (15%)" in redis
    assert "History: every recorded run of each stream's signature" in shown.stdout
    assert "no recorded verdicts yet" in shown.stdout
    data = json.loads(
        _cli("analyze", "examples/phase2.yaml", "--json", "--calibration", "--history", "none",
             state=tmp_path).stdout
    )  # fmt: skip
    assert data["history_scope"] == "none" and data["calibration"]["brier"] is None
    redis_row = next(s for s in data["streams"] if s["stream"] == "redis-auth")
    assert redis_row["declared_risk"] == 0.15 and redis_row["risk"] == pytest.approx(0.05)


def test_a_refusal_by_min_confidence_exits_4_not_2(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "version: 1\nplan: doubtful\ncaps: {light: null}\nmin_confidence: 0.9\n"
        "agents: {w: {class: light, can: [sleep]}}\n"
        "streams:\n  - id: s\n    team: [w]\n    success_probability: 0.5\n"
        "    steps: [{id: a, agent: w, action: sleep}]\n"
    )
    refused = _cli("run", str(plan), "--plain", state=tmp_path)
    assert refused.returncode == 4, refused.stderr
    assert "predicted success probability 50% is below the plan's min_confidence 90%" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr
    forced = _cli("run", str(plan), "--plain", "--force", state=tmp_path)
    assert forced.returncode == 0, forced.stderr

    # The run it was forced into is history now: analyze names it and scores it.
    shown = _cli("analyze", str(plan), "--calibration", state=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "  s: runs of plan doubtful, " in shown.stdout
    assert "Last real makespan: " in shown.stdout
    assert "Brier score: 0.250 over 1 verdict " in shown.stdout  # predicted 50%, succeeded
    data = json.loads(_cli("analyze", str(plan), "--json", "--calibration", state=tmp_path).stdout)
    (only,) = data["calibration"]["runs"]
    assert data["last_run"]["run_id"] == only["run_id"]
    assert only["predicted_makespan_s"] == 0.0  # a 0 s sleep, predicted from no history
