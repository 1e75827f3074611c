"""Scheduler invariants on random plans (hypothesis), on a virtual clock.

For any plan: the run ends (no deadlock), no class ever exceeds its cap and no lock is ever
held twice (checked from the event log alone), dependency and needs order is respected, and
failures are contained: a stream fails only through its own steps, is skipped only through a
dependency, and every other stream succeeds.
"""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.scheduler import RunStatus
from orchestrator.verify import verify_events
from tests.helpers import on_virtual_clock, plan_from, run_plan

AGENT_NAMES = ["cpu-agent", "io-agent", "net-agent", "light-agent"]
RESOURCES = ["redis", "database", "api-gateway"]


@st.composite
def plans(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, bool]]:
    """A random valid plan, and for each stream whether one of its own steps fails."""
    n_streams = draw(st.integers(1, 5))
    streams: list[dict[str, Any]] = []
    fails: dict[str, bool] = {}
    for s in range(n_streams):
        n_steps = draw(st.integers(1, 6))
        steps: list[dict[str, Any]] = []
        for i in range(n_steps):
            needs = (
                draw(
                    st.lists(st.sampled_from([f"t{j}" for j in range(i)]), unique=True, max_size=2)
                )
                if i and draw(st.booleans())
                else None
            )
            fail = draw(st.integers(0, 9)) == 0
            step: dict[str, Any] = {
                "id": f"t{i}",
                "agent": draw(st.sampled_from(AGENT_NAMES)),
                "action": "sleep",
                "with": {"seconds": draw(st.integers(0, 20)) / 10, "fail": fail},
                "locks": draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=2)),
            }
            if needs is not None:
                step["needs"] = needs
            steps.append(step)
        sid = f"s{s}"
        fails[sid] = any(step["with"]["fail"] for step in steps)
        streams.append(
            {
                "id": sid,
                "priority": draw(st.sampled_from(["critical", "high", "medium", "low"])),
                "team": sorted({step["agent"] for step in steps}),
                "depends_on": draw(
                    st.lists(st.sampled_from([f"s{j}" for j in range(s)]), unique=True, max_size=2)
                )
                if s
                else [],
                "steps": steps,
            }
        )
    caps = {
        "cpu": draw(st.integers(1, 3)),
        "io": draw(st.integers(1, 3)),
        "network": draw(st.integers(1, 2)),
        "light": None,
    }
    return {"streams": streams, "caps": caps}, fails


def _expected_status(plan: dict[str, Any], fails: dict[str, bool]) -> dict[str, str]:
    """Stream outcomes implied by which streams' own steps fail."""
    status: dict[str, str] = {}
    for spec in plan["streams"]:  # depends_on only points backwards
        if any(status[d] != "succeeded" for d in spec["depends_on"]):
            status[spec["id"]] = "skipped"
        elif fails[spec["id"]]:
            status[spec["id"]] = "failed"
        else:
            status[spec["id"]] = "succeeded"
    return status


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_random_plans_keep_every_invariant(drawn: tuple[dict[str, Any], dict[str, bool]]) -> None:
    spec, fails = drawn
    plan = plan_from(spec["streams"], caps=spec["caps"])

    async def go() -> Any:
        with anyio.fail_after(100_000):  # virtual seconds: hitting this means a deadlock
            return await run_plan(plan)

    result, events = on_virtual_clock(go)
    report = verify_events([events])
    assert report.ok, report.render()
    assert not report.warnings
    expected = _expected_status(spec, fails)
    assert {sid: o.status.value for sid, o in result.streams.items()} == expected
    assert result.status is (
        RunStatus.SUCCEEDED
        if all(v == "succeeded" for v in expected.values())
        else RunStatus.FAILED
    )
    # Every step ends exactly once: finished (once per attempt) or skipped.
    ended = {
        (e["stream"], e["step"]) for e in events if e["event"] in ("step_finished", "step_skipped")
    }
    assert ended == {(s["id"], t["id"]) for s in spec["streams"] for t in s["steps"]}
