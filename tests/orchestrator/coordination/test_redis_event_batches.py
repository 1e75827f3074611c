"""A run's events relayed into its Redis stream a batch at a time (``append_events``, one
script call per batch): in order, capped, followed like single appends, and a whole run's
events relayed through ``execute_plan`` arrive once each, in order."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import anyio

from agents import builtin_registry
from orchestrator.event_relay import EventBatchStream, relay_for
from orchestrator.events import MemorySink
from orchestrator.runs import execute_plan
from orchestrator.settings import Settings
from tests.helpers import plan_from, sleep_step, stream
from tests.servers import OpenCoordinator


async def _follow(coordinator: Any, run_id: str, count: int, into: list[dict[str, Any]]) -> None:
    """Read the run's stream from its start into ``into`` until it holds ``count`` events."""
    async with contextlib.aclosing(coordinator.follow_events(run_id, from_start=True)) as it:
        async for event in it:
            into.append(event)
            if len(into) == count:
                return


async def _followed(coordinator: Any, run_id: str, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        await _follow(coordinator, run_id, count, seen)
    return seen


async def test_a_batch_is_appended_in_order_and_capped(open_coordinator: OpenCoordinator) -> None:
    async with (
        open_coordinator(events_maxlen=100) as one,
        open_coordinator(namespace=one.namespace) as two,
    ):
        assert isinstance(one, EventBatchStream)
        assert await one.append_events("r1", []) == ""
        first = await one.append_events("r1", [{"n": n} for n in range(3)])
        last = await one.append_events("r1", [{"n": n, "text": "é \x00"} for n in range(3, 5)])
        assert first and last and first != last
        assert await _followed(two, "r1", 5) == [
            {"n": 0}, {"n": 1}, {"n": 2}, {"n": 3, "text": "é \x00"}, {"n": 4, "text": "é \x00"}
        ]  # fmt: skip

        for start in range(0, 1_000, 250):  # capped (approximately) at events_maxlen
            await one.append_events("r2", [{"n": n} for n in range(start, start + 250)])
        kept: list[dict[str, Any]] = []
        with anyio.move_on_after(0.5):  # the stream holds fewer: read what there is
            await _follow(two, "r2", 1_000, kept)
        assert kept[-1] == {"n": 999} and len(kept) < 1_000
        assert [e["n"] for e in kept] == list(range(1_000 - len(kept), 1_000))


async def test_a_run_is_relayed_in_batches_once_each_in_order(
    open_coordinator: OpenCoordinator, tmp_path: Path
) -> None:
    sink = MemorySink()
    plan = plan_from([stream("s", [sleep_step(f"t{n}") for n in range(20)])])
    async with open_coordinator() as coordinator:
        assert relay_for(coordinator, "run-x") is not None
        with anyio.fail_after(60):
            result = await execute_plan(
                plan,
                run_id="run-x",
                settings=Settings(state_dir=tmp_path),
                coordinator=coordinator,
                registry=builtin_registry(),
                sinks=[sink],
                workdir=tmp_path,
            )
        assert result.status.value == "succeeded"
        relayed = await _followed(coordinator, "run-x", len(sink.events))
    assert [e["seq"] for e in relayed] == [e["seq"] for e in sink.events]
    assert relayed == [dict(e) for e in sink.events]
