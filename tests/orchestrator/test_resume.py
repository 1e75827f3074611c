"""Draining a run and resuming it from its events (what the daemon does across restarts)."""

from __future__ import annotations

from typing import Any

import anyio

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import PriorState, RunStatus, Scheduler, StepStatus, StreamStatus
from streams.model import Plan
from tests.helpers import events_named, on_virtual_clock, plan_from, sleep_step, stream


def _scheduler(plan: Plan, sink: MemorySink, prior: PriorState | None = None) -> Scheduler:
    return Scheduler(
        plan,
        run_id="r",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("r", [sink]),
        prior=prior,
    )


PLAN = plan_from(
    [
        stream(
            "chain",
            [sleep_step("a", seconds=1), sleep_step("b", seconds=1), sleep_step("c", seconds=1)],
        ),
        stream("after", [sleep_step("d", seconds=1)], depends_on=["chain"]),
        stream("quick", [sleep_step("q", seconds=0.5)]),
    ]
)


def test_drain_lets_running_steps_finish_and_starts_nothing_new() -> None:
    async def go() -> tuple[Any, list[dict[str, Any]]]:
        sink = MemorySink()
        scheduler = _scheduler(PLAN, sink)
        async with anyio.create_task_group() as tg:

            async def drain_later() -> None:
                await anyio.sleep(1.5)
                scheduler.drain()

            tg.start_soon(drain_later)
            result = await scheduler.run()
        return result, sink.events

    result, events = on_virtual_clock(go)
    assert result.status is RunStatus.SUSPENDED
    started = [e["step"] for e in events_named(events, "step_started")]
    assert sorted(started) == ["a", "b", "q"]  # b was running at the drain; c never ran
    assert events_named(events, "step_finished", step="b")[0]["status"] == "succeeded"
    assert events[-1]["event"] == "run_suspended"
    # Only the stream that really ended is recorded as ended.
    assert [e["stream"] for e in events_named(events, "stream_finished")] == ["quick"]


def test_resume_runs_only_what_is_left() -> None:
    async def go() -> tuple[Any, list[dict[str, Any]]]:
        first = MemorySink()
        scheduler = _scheduler(PLAN, first)
        async with anyio.create_task_group() as tg:

            async def drain_later() -> None:
                await anyio.sleep(1.5)
                scheduler.drain()

            tg.start_soon(drain_later)
            await scheduler.run()
        second = MemorySink()
        result = await _scheduler(PLAN, second, PriorState.from_events(first.events)).run()
        return result, second.events

    result, events = on_virtual_clock(go)
    assert result.status is RunStatus.SUCCEEDED
    assert [e["step"] for e in events_named(events, "step_started")] == ["c", "d"]
    assert events[0]["event"] == "run_resumed" and events[-1]["status"] == "succeeded"
    assert result.streams["quick"].status is StreamStatus.SUCCEEDED  # from before


def _crashed_after_b_started(idempotent: bool) -> tuple[Plan, list[dict[str, Any]]]:
    plan = plan_from(
        [
            stream(
                "chain",
                [
                    sleep_step("a", seconds=1),
                    sleep_step("b", seconds=1, idempotent=idempotent),
                    sleep_step("c", seconds=1),
                ],
            )
        ]
    )

    async def go() -> list[dict[str, Any]]:
        sink = MemorySink()
        with anyio.move_on_after(1.5):  # the "crash": nothing after this point is recorded
            await _scheduler(plan, sink).run()
        cut = next(
            i
            for i, e in enumerate(sink.events)
            if e["event"] == "step_started" and e["step"] == "b"
        )
        return sink.events[: cut + 1]

    return plan, on_virtual_clock(go)


def test_interrupted_step_that_is_not_idempotent_fails_its_stream() -> None:
    plan, before = _crashed_after_b_started(idempotent=False)

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        sink = MemorySink()
        result = await _scheduler(plan, sink, PriorState.from_events(before)).run()
        return result, sink.events

    result, events = on_virtual_clock(go)
    assert result.streams["chain"].status is StreamStatus.FAILED
    assert result.streams["chain"].steps["b"] is StepStatus.INTERRUPTED
    assert events_named(events, "step_finished", step="b")[0]["status"] == "interrupted"
    assert not events_named(events, "step_started")  # a is not re-run, c never starts
    assert events_named(events, "step_skipped", step="c")


def test_interrupted_idempotent_step_runs_again_with_the_next_attempt() -> None:
    plan, before = _crashed_after_b_started(idempotent=True)

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        sink = MemorySink()
        result = await _scheduler(plan, sink, PriorState.from_events(before)).run()
        return result, sink.events

    result, events = on_virtual_clock(go)
    assert result.status is RunStatus.SUCCEEDED
    started = events_named(events, "step_started")
    assert [(e["step"], e["attempt"]) for e in started] == [("b", 2), ("c", 1)]
