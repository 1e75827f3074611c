"""Gates decided from measured metrics and collected evidence; rollback of failed streams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict

from agents import ActionContext, ActionResult, Evidence, builtin_registry
from agents.registry import ActionRegistry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import PriorState, RunStatus, Scheduler, StreamStatus
from streams.model import Plan
from tests.helpers import events_named, on_virtual_clock, plan_from, sleep_step, stream


class ReportParams(BaseModel):
    """A test action at our own registry boundary: reports given metrics as verified or
    claimed, like a built-in action or an external agent would."""

    model_config = ConfigDict(extra="forbid")
    metrics: dict[str, float] = {}
    claimed: bool = False
    names: str | None = None  # the requirement id its evidence names, if any
    evidence: bool = True
    fail: bool = False
    seconds: float = 0.0


async def report(ctx: ActionContext, params: ReportParams) -> ActionResult:
    await anyio.sleep(params.seconds)
    records = (
        Evidence(
            check=f"{ctx.step} measured",
            source="agent" if params.claimed else "test",
            metrics=dict(params.metrics),
            verified=not params.claimed,
            id=params.names,
        ),
    )
    return ActionResult(
        ok=not params.fail,
        summary="reported" if not params.fail else "broke",
        metrics=dict(params.metrics),
        evidence=records if params.evidence else (),
        details={"claimed": params.claimed},
    )


def registry() -> ActionRegistry:
    reg = builtin_registry()
    reg.register("report", ReportParams)(report)
    return reg


AGENTS = {
    "worker": {"class": "cpu", "can": ["sleep", "report", "command"]},
    "fixer": {"class": "light", "can": ["sleep", "report", "command"]},
}


def make_plan(streams: list[dict[str, Any]]) -> Plan:
    return plan_from(streams, agents=AGENTS, caps={"cpu": 1, "light": None})


def measure(sid: str, metrics: dict[str, float], **extra: Any) -> dict[str, Any]:
    return {"id": sid, "agent": "worker", "action": "report", "with": {"metrics": metrics}, **extra}


async def run(
    plan: Plan, *, cancel_after: float | None = None, prior: PriorState | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    sink = MemorySink()
    scheduler = Scheduler(
        plan,
        run_id="r",
        coordinator=InProcessCoordinator(),
        registry=registry(),
        events=EventLog("r", [sink]),
        prior=prior,
    )
    result = None
    with anyio.move_on_after(cancel_after):
        result = await scheduler.run()
    return result, sink.events


def test_gate_passes_on_measured_metrics() -> None:
    plan = make_plan(
        [
            stream(
                "db",
                [measure("query", {"db.response_ms.p50": 84})],
                gate={"threshold": 0.9, "criteria": ["db.response_ms.p50 < 100"]},
            )
        ]
    )
    result, events = on_virtual_clock(run, plan)
    assert result.status is RunStatus.SUCCEEDED
    (gate,) = events_named(events, "gate_evaluated", stream="db")
    assert gate["passed"] and gate["confidence"] == 1.0
    assert "84 < 100: met" in gate["criteria"][0]["reason"]


def test_failed_gate_rolls_back_undo_in_reverse_then_the_procedure() -> None:
    plan = make_plan(
        [
            stream(
                "redis",
                [
                    measure("one", {}, undo={"action": "sleep", "with": {"seconds": 1}}),
                    measure(
                        "two",
                        {"redis.noauth_errors": 3},
                        undo={"action": "sleep", "with": {"seconds": 1}},
                    ),
                ],
                gate={
                    "threshold": 1.0,
                    "criteria": ["redis.noauth_errors == 0", "redis.rtt_ms < 5"],
                },
                rollback={
                    "budget": "2m",
                    "steps": [sleep_step("restart-without-auth", "fixer", 2, locks=["redis"])],
                },
            )
        ]
    )
    result, events = on_virtual_clock(run, plan)
    outcome = result.streams["redis"]
    assert outcome.status is StreamStatus.FAILED
    assert "gate failed: gate confidence 0% below threshold 100%" in outcome.reason
    (gate,) = events_named(events, "gate_evaluated")
    reasons = [c["reason"] for c in gate["criteria"]]
    assert "redis.noauth_errors = 3, not == 0: not met" in reasons[0]
    assert reasons[1] == "redis.rtt_ms was not measured by any step"
    rollback_steps = [e["step"] for e in events_named(events, "step_started") if e.get("phase")]
    assert rollback_steps == ["two.undo", "one.undo", "restart-without-auth"]
    (done,) = events_named(events, "rollback_finished")
    assert done["status"] == "completed" and done["within_budget"] is True
    assert done["duration_s"] == 4.0  # 1 + 1 + 2 virtual seconds
    assert "rolled back in 4s (within its 120s budget)" in outcome.reason


def test_missing_and_claimed_evidence_fail_the_gate_by_name() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    measure("probe", {"x": 1}, evidence=["auth-logs"]),
                    {
                        "id": "agent-says",
                        "agent": "worker",
                        "action": "report",
                        "with": {"metrics": {}, "claimed": True, "names": "cli-auth"},
                        "evidence": ["cli-auth"],
                    },
                ],
                evidence=[
                    {"id": "auth-logs"},
                    {"id": "cli-auth", "verified": True},
                    {"id": "dashboards"},
                ],
            )
        ]
    )
    result, events = on_virtual_clock(run, plan)
    assert result.streams["s"].status is StreamStatus.FAILED
    (gate,) = events_named(events, "gate_evaluated")
    assert gate["missing_evidence"] == [
        "cli-auth (only claimed by an agent; verified required)",
        "dashboards (no step declares it)",
    ]
    collected = events_named(events, "evidence_collected", step="agent-says")
    assert collected[0]["verified"] is False and collected[0]["provides"] == ["cli-auth"]


def test_claimed_metrics_do_not_pass_a_gate_that_requires_verified() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    {
                        "id": "agent",
                        "agent": "worker",
                        "action": "report",
                        "with": {"metrics": {"gpu.utilization_pct": 70}, "claimed": True},
                    }
                ],
                gate={
                    "threshold": 1.0,
                    "require_verified": True,
                    "criteria": ["gpu.utilization_pct > 50"],
                },
            )
        ]
    )
    result, events = on_virtual_clock(run, plan)
    assert result.streams["s"].status is StreamStatus.FAILED
    (gate,) = events_named(events, "gate_evaluated")
    assert "only claimed" in gate["criteria"][0]["reason"]


def test_dependents_wait_for_the_gate() -> None:
    plan = make_plan(
        [
            stream("a", [measure("m", {"ok": 0})], gate={"criteria": ["ok == 1"]}),
            stream("b", [sleep_step("after", "fixer")], depends_on=["a"]),
        ]
    )
    result, _ = on_virtual_clock(run, plan)
    assert result.streams["b"].status is StreamStatus.SKIPPED
    assert "a (failed)" in result.streams["b"].reason


def test_rollback_waits_for_its_locks_like_anything_else() -> None:
    plan = make_plan(
        [
            stream(
                "failing",
                [sleep_step("boom", "fixer", 0.5) | {"with": {"seconds": 0.5, "fail": True}}],
                rollback={"steps": [sleep_step("restore", "fixer", 1, locks=["redis"])]},
            ),
            stream("busy", [sleep_step("holds-redis", "fixer", 5, locks=["redis"])]),
        ]
    )
    result, events = on_virtual_clock(run, plan)
    waits = events_named(events, "step_waiting", step="restore")
    assert waits and "held by busy/holds-redis" in waits[0]["waiting_for"][0]
    (restore,) = events_named(events, "step_started", step="restore")
    (holder_end,) = events_named(events, "step_finished", step="holds-redis")
    assert restore["seq"] > holder_end["seq"]
    assert result.streams["busy"].status is StreamStatus.SUCCEEDED


def test_a_failing_undo_is_retried_reported_and_the_rest_still_runs() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    sleep_step(
                        "a",
                        "fixer",
                        0.1,
                        undo={"action": "sleep", "with": {"seconds": 0.1, "fail": True}},
                        retries=1,
                    ),
                    sleep_step("b", "fixer", 0.1) | {"with": {"seconds": 0.1, "fail": True}},
                ],
                rollback={"steps": [sleep_step("procedure", "fixer", 0.1)]},
            )
        ]
    )
    result, events = on_virtual_clock(run, plan)
    undo_attempts = events_named(events, "step_finished", step="a.undo")
    assert [e["attempt"] for e in undo_attempts] == [1, 2]  # retried once (the step's retries)
    (failed,) = events_named(events, "rollback_step_failed")
    assert failed["step"] == "a.undo"
    assert events_named(events, "step_finished", step="procedure")[0]["status"] == "succeeded"
    (done,) = events_named(events, "rollback_finished")
    assert done["status"] == "incomplete" and done["failed"] == ["a.undo"]
    assert "rollback INCOMPLETE, failed: a.undo" in result.streams["s"].reason


def test_cancel_still_rolls_back() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    sleep_step(
                        "done-first", "fixer", 1, undo={"action": "sleep", "with": {"seconds": 1}}
                    ),
                    sleep_step("long", "fixer", 100),
                ],
                rollback={"steps": [sleep_step("restore", "fixer", 1)]},
            )
        ]
    )
    _, events = on_virtual_clock(lambda: run(plan, cancel_after=5.0))
    started = [e["step"] for e in events_named(events, "step_started") if e.get("phase")]
    assert started == ["done-first.undo", "restore"]
    (done,) = events_named(events, "rollback_finished")
    assert done["reason"] == "run cancelled" and done["status"] == "completed"
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "cancelled"


def test_interrupted_step_rolls_the_stream_back_on_resume(tmp_path: Path) -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    sleep_step("a", "fixer", 1, undo={"action": "sleep", "with": {"seconds": 1}}),
                    sleep_step("b", "fixer", 1),
                    sleep_step("c", "fixer", 1),
                ],
                rollback={"steps": [sleep_step("restore", "fixer", 1)]},
            )
        ]
    )

    async def crash_then_resume() -> tuple[Any, list[dict[str, Any]]]:
        _, before = await run(plan, cancel_after=1.5)
        cut = next(
            i for i, e in enumerate(before) if e["event"] == "step_started" and e["step"] == "b"
        )
        return await run(plan, prior=PriorState.from_events(before[: cut + 1]))

    result, events = on_virtual_clock(crash_then_resume)
    outcome = result.streams["s"]
    assert outcome.status is StreamStatus.FAILED and outcome.steps["b"].value == "interrupted"
    started = [e["step"] for e in events_named(events, "step_started")]
    assert started == ["a.undo", "restore"]  # a's plan undo still applies after the restart


def _resumed_after(plan: Plan, crash_at_step: str) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``plan`` until ``crash_at_step`` starts (nothing later is recorded), then resume
    a new scheduler from those events alone; return the resumed result and events."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        _, first = await run(plan, cancel_after=1.5)
        cut = next(
            i
            for i, e in enumerate(first)
            if e["event"] == "step_started" and e["step"] == crash_at_step
        )
        return await run(plan, prior=PriorState.from_events(first[: cut + 1]))

    return on_virtual_clock(go)


def test_evidence_and_metrics_stored_before_a_resume_count_for_the_gate() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    measure("probe", {"db.response_ms.p50": 84}, evidence=["auth-logs"]),
                    {**sleep_step("wait", agent="worker", seconds=2), "idempotent": True},
                ],
                evidence=[{"id": "auth-logs", "verified": True}],
                gate={"threshold": 1.0, "criteria": ["db.response_ms.p50 < 100"]},
            )
        ]
    )
    result, events = _resumed_after(plan, "wait")
    assert result.streams["s"].status is StreamStatus.SUCCEEDED, result.streams["s"].reason
    assert [e["step"] for e in events_named(events, "step_started")] == ["wait"]  # probe kept
    (gate,) = events_named(events, "gate_evaluated")
    assert gate["passed"] and gate["missing_evidence"] == []
    assert "84 < 100: met" in gate["criteria"][0]["reason"]


def test_claimed_metrics_stay_claimed_across_a_resume() -> None:
    plan = make_plan(
        [
            stream(
                "s",
                [
                    {
                        "id": "agent",
                        "agent": "worker",
                        "action": "report",
                        "with": {"metrics": {"gpu.utilization_pct": 70}, "claimed": True},
                    },
                    {**sleep_step("wait", agent="worker", seconds=2), "idempotent": True},
                ],
                gate={
                    "threshold": 1.0,
                    "require_verified": True,
                    "criteria": ["gpu.utilization_pct > 50"],
                },
            )
        ]
    )
    result, events = _resumed_after(plan, "wait")
    assert result.streams["s"].status is StreamStatus.FAILED
    (gate,) = events_named(events, "gate_evaluated")
    assert "only claimed" in gate["criteria"][0]["reason"]
