"""The scheduler, on trio's virtual clock: sleeps take no real time, so durations are exact."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunStatus, Scheduler, StepStatus, StreamStatus
from orchestrator.verify import verify_events
from tests.helpers import events_named, on_virtual_clock, plan_from, run_plan, sleep_step, stream

CLASSES = ["cpu", "io", "network", "light"]


def _agent(cls: str) -> str:
    return {"cpu": "cpu-agent", "io": "io-agent", "network": "net-agent", "light": "light-agent"}[
        cls
    ]


async def _timed(plan: Any, **kw: Any) -> tuple[Any, list[dict[str, Any]], float]:
    start = anyio.current_time()
    result, events = await run_plan(plan, **kw)
    return result, events, anyio.current_time() - start


def test_peer_shape_reaches_the_ideal_makespan() -> None:
    """4 streams x 50 independent 50 ms steps in rotating classes under caps 2/3/2/-."""
    streams = [
        stream(
            f"s{s}",
            [sleep_step(f"t{i}", _agent(CLASSES[(s + i) % 4]), 0.05, needs=[]) for i in range(50)],
        )
        for s in range(4)
    ]
    result, events, makespan = on_virtual_clock(_timed, plan_from(streams))
    assert result.status is RunStatus.SUCCEEDED
    assert makespan == pytest.approx(1.25, abs=1e-6)  # 50 cpu steps / cap 2 x 50 ms
    report = verify_events([events])
    assert report.ok, report.render()
    assert report.peak == {"cpu": 2, "io": 3, "network": 2, "light": 50}
    # Short whatever the run's size: asyncio reprs the main task's result as it ends.
    assert repr(result) == "RunResult('run-test', succeeded, 4 streams)"


def test_dependency_failure_skips_dependents_and_spares_independent_streams() -> None:
    plan = plan_from(
        [
            stream(
                "a",
                [sleep_step("boom", seconds=1, retries=0) | {"with": {"seconds": 1, "fail": True}}],
            ),
            stream("b", [sleep_step("after-a")], depends_on=["a"]),
            stream("c", [sleep_step("x", seconds=2), sleep_step("y", seconds=1)]),
        ]
    )
    result, events, _ = on_virtual_clock(_timed, plan)
    assert result.status is RunStatus.FAILED
    assert result.streams["a"].status is StreamStatus.FAILED
    assert result.streams["b"].status is StreamStatus.SKIPPED
    assert "a (failed)" in result.streams["b"].reason
    assert result.streams["c"].status is StreamStatus.SUCCEEDED
    assert events_named(events, "step_skipped", stream="b", step="after-a")
    assert not events_named(events, "stream_started", stream="b")


def test_dependent_stream_starts_after_its_dependency_succeeds() -> None:
    plan = plan_from(
        [
            stream("a", [sleep_step("one", seconds=3)]),
            stream("b", [sleep_step("two", seconds=1)], depends_on=["a"]),
        ]
    )
    result, events, makespan = on_virtual_clock(_timed, plan)
    assert result.status is RunStatus.SUCCEEDED
    assert makespan == pytest.approx(4.0)
    assert verify_events([events]).ok


def test_needs_form_a_dag_within_a_stream() -> None:
    plan = plan_from(
        [
            stream(
                "s",
                [
                    sleep_step("a", seconds=1, needs=[]),
                    sleep_step("b", seconds=2, needs=[]),
                    sleep_step("c", seconds=1, needs=["a", "b"]),
                    sleep_step("d", seconds=1),  # default: the previous step (c)
                ],
            )
        ]
    )
    result, events, makespan = on_virtual_clock(_timed, plan)
    assert result.status is RunStatus.SUCCEEDED
    assert makespan == pytest.approx(4.0)  # max(1, 2) + 1 + 1
    order = [e["step"] for e in events_named(events, "step_started")]
    assert order.index("c") > max(order.index("a"), order.index("b"))
    assert order[-1] == "d"


def test_higher_priority_is_served_first_then_fifo() -> None:
    # One cpu slot: the holder keeps it while three streams queue for it.
    plan = plan_from(
        [
            stream("hold", [sleep_step("h", "cpu-agent", 1)], priority="low"),
            stream(
                "low",
                [sleep_step("l0", seconds=0.1), sleep_step("l", "cpu-agent", 1)],
                priority="low",
            ),
            stream(
                "med",
                [sleep_step("m0", seconds=0.2), sleep_step("m", "cpu-agent", 1)],
                priority="medium",
            ),
            stream(
                "crit",
                [sleep_step("c0", seconds=0.3), sleep_step("c", "cpu-agent", 1)],
                priority="critical",
            ),
        ],
        caps={"cpu": 1, "io": 1, "network": 1, "light": None},
    )
    result, events, _ = on_virtual_clock(_timed, plan)
    assert result.status is RunStatus.SUCCEEDED
    cpu_order = [e["step"] for e in events_named(events, "step_started", resource_class="cpu")]
    assert cpu_order == ["h", "c", "m", "l"]


def test_aging_lets_a_low_priority_waiter_overtake_newer_critical_ones() -> None:
    """With aging_s = 1, a low waiter queued 5 s earlier beats critical newcomers."""
    plan = plan_from(
        [
            stream("hold", [sleep_step("h", "cpu-agent", 6)], priority="critical"),
            stream(
                "low",
                [sleep_step("l0", seconds=0.5), sleep_step("l", "cpu-agent", 1)],
                priority="low",
            ),
            stream(
                "crit",
                [sleep_step("c0", seconds=5.5), sleep_step("c", "cpu-agent", 1)],
                priority="critical",
            ),
        ],
        caps={"cpu": 1, "io": 1, "network": 1, "light": None},
    )

    async def go() -> Any:
        return await run_plan(plan, coordinator=InProcessCoordinator(aging_s=1.0))

    result, events = on_virtual_clock(go)
    assert result.status is RunStatus.SUCCEEDED
    cpu_order = [e["step"] for e in events_named(events, "step_started", resource_class="cpu")]
    assert cpu_order == ["h", "l", "c"]


def test_failed_step_retries_with_growing_backoff_then_fails() -> None:
    plan = plan_from(
        [
            stream(
                "s",
                [
                    sleep_step("flaky", seconds=0.1, retries=2)
                    | {"with": {"seconds": 0.1, "fail": True}}
                ],
            )
        ],
        defaults={"backoff": "1s"},
    )
    result, events, _ = on_virtual_clock(_timed, plan)
    assert result.streams["s"].steps["flaky"] is StepStatus.FAILED
    finished = events_named(events, "step_finished", step="flaky")
    assert [e["attempt"] for e in finished] == [1, 2, 3]
    delays = [e["delay_s"] for e in events_named(events, "step_retrying", step="flaky")]
    assert len(delays) == 2
    assert 0.5 <= delays[0] <= 1.0 <= delays[1] <= 2.0  # equal jitter around 1 s, then 2 s


def test_step_timeout_is_reported_as_timed_out() -> None:
    plan = plan_from([stream("s", [sleep_step("slow", seconds=60, timeout="1s")])])
    result, events, makespan = on_virtual_clock(_timed, plan)
    assert result.streams["s"].steps["slow"] is StepStatus.TIMED_OUT
    (finished,) = events_named(events, "step_finished", step="slow")
    assert finished["status"] == "timed_out"
    assert finished["duration_s"] == pytest.approx(1.0)
    assert makespan == pytest.approx(1.0)


def test_timeline_limit_cancels_the_rest_of_its_stream_only() -> None:
    plan = plan_from(
        [
            stream(
                "late",
                [sleep_step("a", seconds=1.5), sleep_step("b", seconds=1.5)],
                timeline="1s..2s",
            ),
            stream("other", [sleep_step("c", seconds=3)]),
        ]
    )
    result, events, _ = on_virtual_clock(_timed, plan)
    assert result.streams["late"].status is StreamStatus.FAILED
    assert "timeline limit" in result.streams["late"].reason
    assert result.streams["late"].steps == {"a": StepStatus.SUCCEEDED, "b": StepStatus.CANCELLED}
    assert result.streams["other"].status is StreamStatus.SUCCEEDED
    (b_end,) = events_named(events, "step_finished", step="b")
    assert b_end["status"] == "cancelled"


def test_lock_timeout_requeues_with_backoff_and_never_fails_the_run() -> None:
    plan = plan_from(
        [
            stream("holder", [sleep_step("hold", seconds=5, locks=["redis"])]),
            stream(
                "waiter",
                [
                    sleep_step("w0", seconds=0.1),
                    sleep_step("w", seconds=1, locks=["redis"], lock_timeout="1s"),
                ],
            ),
        ],
        defaults={"backoff": "200ms"},
    )
    result, events, _ = on_virtual_clock(_timed, plan)
    assert result.status is RunStatus.SUCCEEDED
    retries = events_named(events, "step_retrying", step="w")
    assert retries and all(e["reason"] == "lock_timeout" for e in retries)
    waits = events_named(events, "step_waiting", step="w")
    assert "held by holder/hold" in waits[0]["waiting_for"][0]
    assert verify_events([events]).ok


def test_cancelling_the_run_records_every_end() -> None:
    plan = plan_from(
        [
            stream("s", [sleep_step("long", seconds=100)]),
            stream("t", [sleep_step("x", seconds=100)], depends_on=["s"]),
        ]
    )

    async def go() -> list[dict[str, Any]]:
        sink = MemorySink()
        scheduler = Scheduler(
            plan,
            run_id="r",
            coordinator=InProcessCoordinator(),
            registry=builtin_registry(),
            events=EventLog("r", [sink]),
        )
        with anyio.move_on_after(5):
            await scheduler.run()
        return sink.events

    events = on_virtual_clock(go)
    assert events_named(events, "step_finished", step="long")[0]["status"] == "cancelled"
    assert events_named(events, "stream_finished", stream="s")[0]["status"] == "cancelled"
    assert events_named(events, "stream_finished", stream="t")[0]["status"] == "cancelled"
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "cancelled"
