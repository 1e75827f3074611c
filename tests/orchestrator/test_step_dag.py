"""Steps queued without a task: the in-process coordinator's ``submit`` and the scheduler's
per-stream DAG that uses it (steps of a full class are queue entries until granted)."""

from __future__ import annotations

import secrets
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agents import builtin_registry
from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from orchestrator.coordination import InProcessCoordinator, Need
from orchestrator.coordination.base import Blocker, Grant, QueueingCoordinator
from orchestrator.coordination.redis import RedisCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunStatus, Scheduler, StepStatus, StreamStatus
from orchestrator.step_dag import START_BURST
from orchestrator.verify import verify_events
from tests.helpers import events_named, on_virtual_clock, plan_from, sleep_step, stream


class WhereParams(BaseModel):
    seconds: float = 0.0


def _need(holder: str, cap: int | None = 1, locks: tuple[str, ...] = (), priority: int = 2) -> Need:
    return Need(holder=holder, resource_class="cpu", cap=cap, locks=locks, priority=priority)


async def test_submit_hands_the_grant_to_its_callback_in_queue_order() -> None:
    coordinator = InProcessCoordinator()
    assert isinstance(coordinator, QueueingCoordinator)
    granted: list[str] = []
    grants: dict[str, Grant] = {}
    blocked: dict[str, tuple[Blocker, ...]] = {}

    def on_granted(grant: Grant) -> None:
        granted.append(grant.need.holder)
        grants[grant.need.holder] = grant

    coordinator.submit(_need("a"), on_granted=on_granted)
    assert granted == ["a"]  # free: granted before submit returned
    coordinator.submit(
        _need("b"), on_granted=on_granted, on_blocked=lambda b: blocked.__setitem__("b", b)
    )
    coordinator.submit(_need("c", priority=1), on_granted=on_granted)
    assert granted == ["a"]
    assert blocked["b"][0].resource == "class:cpu" and blocked["b"][0].holders == ("a",)
    snap = await coordinator.snapshot()
    assert [w.holder for w in snap.waiters] == ["c", "b"]  # priority first
    await coordinator.release(grants["a"])
    assert granted == ["a", "c"]
    await coordinator.release(grants["c"])
    assert granted == ["a", "c", "b"]
    await coordinator.release(grants["b"])
    snap = await coordinator.snapshot()
    assert snap.holders == () and snap.waiters == ()


async def test_a_withdrawn_ticket_is_never_granted_and_a_granted_one_stays_granted() -> None:
    coordinator = InProcessCoordinator()
    grants: list[Grant] = []
    first = coordinator.submit(_need("a", locks=("db",)), on_granted=grants.append)
    second = coordinator.submit(_need("b", cap=None, locks=("db",)), on_granted=grants.append)
    unlimited = coordinator.submit(_need("u", cap=None), on_granted=grants.append)
    assert [g.need.holder for g in grants] == ["a", "u"]
    assert second.withdraw() is True
    assert first.withdraw() is False and unlimited.withdraw() is False
    for grant in grants:
        await coordinator.release(grant)
    snap = await coordinator.snapshot()
    assert [g.need.holder for g in grants] == ["a", "u"]
    assert snap.holders == () and snap.waiters == ()


async def test_submitted_and_acquiring_waiters_share_one_queue() -> None:
    coordinator = InProcessCoordinator()
    order: list[str] = []
    held = await coordinator.acquire(_need("holder"))
    coordinator.submit(_need("queued-first"), on_granted=lambda g: order.append("queued-first"))

    async def acquire_second() -> None:
        grant = await coordinator.acquire(_need("acquired-second"))
        order.append("acquired-second")
        await coordinator.release(grant)

    async with anyio.create_task_group() as tg:
        tg.start_soon(acquire_second)
        await anyio.wait_all_tasks_blocked()
        await coordinator.release(held)
        assert order == ["queued-first"]  # the submitted one came first and holds the slot
        snap = await coordinator.snapshot()
        (holder,) = snap.holders
        assert holder.holder == "queued-first"
        await coordinator.release(Grant(need=_need("queued-first"), fences={}, lost=anyio.Event()))
        # That grant object is not the one held: releasing it is harmless and frees nothing.
        assert [h.holder for h in (await coordinator.snapshot()).holders] == ["queued-first"]
        tg.cancel_scope.cancel()


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _scheduler(
    plan: Any,
    coordinator: InProcessCoordinator,
    sink: MemorySink,
    registry: ActionRegistry | None = None,
) -> Scheduler:
    return Scheduler(
        plan,
        run_id="r",
        coordinator=coordinator,
        registry=registry or builtin_registry(),
        events=EventLog("r", [sink]),
    )


def _run_virtual(
    plan: Any,
    coordinator: InProcessCoordinator | None = None,
    registry: ActionRegistry | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``plan`` on the virtual clock; its result and events."""

    async def go() -> tuple[Any, list[dict[str, Any]]]:
        sink = MemorySink()
        scheduler = _scheduler(plan, coordinator or InProcessCoordinator(), sink, registry)
        return await scheduler.run(), sink.events

    return on_virtual_clock(go)


def _cpu_plan(n: int, seconds: float, **extra: Any) -> Any:
    return plan_from(
        [
            stream(
                "s",
                [sleep_step(f"t{i}", "cpu-agent", seconds, needs=[]) for i in range(n)],
                **extra,
            )
        ],
        caps={"cpu": 1, "io": 3, "network": 2, "light": None},
    )


def test_steps_of_a_full_class_wait_as_queue_entries_without_tasks() -> None:
    plan = _cpu_plan(40, 1.0)

    async def go() -> tuple[Any, list[dict[str, Any]], list[tuple[int, int]]]:
        coordinator, sink = InProcessCoordinator(), MemorySink()
        seen: list[tuple[int, int]] = []  # (tasks alive, steps waiting) at each second

        async def look() -> None:
            for _ in range(5):
                await anyio.sleep(0.5)
                snap = await coordinator.snapshot()
                seen.append((len(anyio.get_running_tasks()), len(snap.waiters)))
                await anyio.sleep(0.5)

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            result = await _scheduler(plan, coordinator, sink).run()
        return result, sink.events, seen

    result, events, seen = on_virtual_clock(go)
    assert result.status is RunStatus.SUCCEEDED
    assert [waiting for _, waiting in seen] == [39, 38, 37, 36, 35]
    # One running step's task, the run's and the stream's, this test's: never one per waiter.
    assert all(tasks < 10 for tasks, _ in seen), seen
    assert len(events_named(events, "step_queued")) == 40
    assert len(events_named(events, "step_waiting")) == 39
    started = [e["step"] for e in events_named(events, "step_started")]
    assert started == [f"t{i}" for i in range(40)]  # FIFO
    assert verify_events([events]).ok


def test_a_burst_of_ready_steps_lets_the_loop_run_between_its_parts() -> None:
    # 300 ready light steps: granted as they are queued. The queueing yields every
    # START_BURST steps, so steps run (and the event writers drain) before all are queued;
    # queued in one stretch, every step_queued came before the first step_started.
    plan = plan_from([stream("s", [sleep_step(f"t{i}", needs=[]) for i in range(300)])])

    result, events = _run_virtual(plan)
    assert result.status is RunStatus.SUCCEEDED
    queued = [e["seq"] for e in events_named(events, "step_queued")]
    started = [e["seq"] for e in events_named(events, "step_started")]
    assert len(queued) == len(started) == 300
    assert min(started) < max(queued)
    assert sum(seq < max(queued) for seq in started) >= START_BURST  # at least a burst ran
    assert verify_events([events]).ok


def test_the_step_that_frees_a_slot_runs_the_next_step_in_its_own_task() -> None:
    # Cap 1: each step's release grants the next one of the same stream, which starts in
    # the task that released (no task per step); the order and events are unchanged.
    registry = builtin_registry()
    tasks: dict[str, int] = {}

    async def where(ctx: ActionContext, params: WhereParams) -> ActionResult:
        tasks[ctx.step] = anyio.get_current_task().id
        await anyio.sleep(params.seconds)
        return ActionResult(ok=True, summary="ran")

    registry.register("where", WhereParams)(where)
    steps = [
        {"id": f"t{i}", "agent": "cpu-agent", "action": "where", "with": {"seconds": 0.5}}
        for i in range(12)
    ]
    agents = {"cpu-agent": {"class": "cpu", "can": ["where"]}}
    plan = plan_from([stream("s", steps)], agents=agents, caps={"cpu": 1})

    result, events = _run_virtual(plan, registry=registry)
    assert result.status is RunStatus.SUCCEEDED
    assert [e["step"] for e in events_named(events, "step_started")] == [f"t{i}" for i in range(12)]
    # t0 was granted as it was queued (its own task); each later step was handed over.
    assert len(set(tasks.values())) <= 2, tasks
    assert verify_events([events]).ok


def test_ready_steps_of_later_bursts_keep_their_place_before_successors() -> None:
    # 64 ready steps (four bursts), each with a successor: a successor readied during a
    # yield must not overtake a ready step of a later burst at the same priority.
    n = 64
    steps = [sleep_step(f"r{i}", "cpu-agent", 0.0, needs=[]) for i in range(n)]
    steps += [sleep_step(f"s{i}", "cpu-agent", 0.0, needs=[f"r{i}"]) for i in range(n)]
    plan = plan_from([stream("s", steps)])

    result, events = _run_virtual(plan)
    assert result.status is RunStatus.SUCCEEDED
    order = [e["step"] for e in events_named(events, "step_started")]
    assert sorted(order[:n]) == sorted(f"r{i}" for i in range(n))  # every r before any s


class _SlowRelease(InProcessCoordinator):
    """Its release awaits, as a Redis coordinator's does."""

    releases_at_once = False

    async def release(self, grant: Grant) -> None:
        await anyio.sleep(5.0)
        self._release_now(grant)


def test_with_a_release_that_awaits_no_grant_waits_for_another_steps_release() -> None:
    # a's release takes 5 s; c (unlimited) is granted the moment b succeeds at 1 s. Handed
    # to a's task (promised while it released), c would start only when that release ends.
    plan = plan_from(
        [
            stream(
                "s",
                [
                    sleep_step("a", "cpu-agent", 0.1, needs=[]),
                    sleep_step("b", "light-agent", 1.0, needs=[]),
                    sleep_step("c", "light-agent", 0.0, needs=["b"]),
                ],
            )
        ]
    )

    result, events = _run_virtual(plan, _SlowRelease())
    assert result.status is RunStatus.SUCCEEDED
    (started,) = [e for e in events_named(events, "step_started") if e["step"] == "c"]
    assert started["waited_s"] < 0.5


def test_queued_steps_cut_by_the_timeline_end_cancelled_unstarted() -> None:
    plan = _cpu_plan(4, 5.0, timeline="0s..1s")

    async def go() -> tuple[Any, list[dict[str, Any]], Any]:
        coordinator, sink = InProcessCoordinator(), MemorySink()
        result = await _scheduler(plan, coordinator, sink).run()
        return result, sink.events, await coordinator.snapshot()

    result, events, snap = on_virtual_clock(go)
    assert result.streams["s"].status is StreamStatus.FAILED
    assert result.streams["s"].steps == dict.fromkeys(
        ["t0", "t1", "t2", "t3"], StepStatus.CANCELLED
    )
    ends = {e["step"]: e for e in events_named(events, "step_finished")}
    assert ends["t0"].get("started") is not False
    for step in ("t1", "t2", "t3"):
        assert ends[step]["started"] is False
        assert ends[step]["reason"] == "cancelled before it started"
    assert snap.holders == () and snap.waiters == ()
    assert verify_events([events]).ok


def test_a_drain_withdraws_queued_steps_and_the_run_is_suspended() -> None:
    plan = _cpu_plan(4, 1.0)

    async def go() -> tuple[Any, list[dict[str, Any]], Any]:
        coordinator, sink = InProcessCoordinator(), MemorySink()
        scheduler = _scheduler(plan, coordinator, sink)

        async def drain_later() -> None:
            await anyio.sleep(0.5)
            scheduler.drain()

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain_later)
            result = await scheduler.run()
        return result, sink.events, await coordinator.snapshot()

    result, events, snap = on_virtual_clock(go)
    assert result.status is RunStatus.SUSPENDED
    assert result.streams["s"].steps == {"t0": StepStatus.SUCCEEDED}
    assert [e["step"] for e in events_named(events, "step_started")] == ["t0"]
    assert [e["step"] for e in events_named(events, "step_finished")] == ["t0"]
    assert snap.holders == () and snap.waiters == ()


def test_on_redis_steps_wait_here_and_only_a_window_waits_at_redis(redis_server: Any) -> None:
    """A coordinator without ``submit`` (Redis): per class, at most its cap of a run's
    lock-free steps wait in Redis; the others wait in the run, in order, without tasks."""
    plan = plan_from(
        [
            stream("s", [sleep_step(f"t{i}", "cpu-agent", 0.02, needs=[]) for i in range(30)]),
            stream("p", [sleep_step("urgent", "cpu-agent", 0.02)], priority="critical"),
            stream("l", [sleep_step("locked", "cpu-agent", 0.02, locks=["redis"])]),
        ],
        caps={"cpu": 1, "io": 3, "network": 2, "light": None},
    )

    async def go() -> tuple[Any, list[dict[str, Any]], list[int], list[int]]:
        async with RedisCoordinator(
            redis_server.url, namespace=f"t{secrets.token_hex(4)}", lease_s=10
        ) as coordinator:
            assert not isinstance(coordinator, QueueingCoordinator)
            sink = MemorySink()
            scheduler = Scheduler(
                plan,
                run_id="r",
                coordinator=coordinator,
                registry=builtin_registry(),
                events=EventLog("r", [sink]),
            )
            at_redis: list[int] = []
            tasks: list[int] = []

            async def look() -> None:
                for _ in range(10):
                    await anyio.sleep(0.03)
                    at_redis.append(len((await coordinator.snapshot()).waiters))
                    tasks.append(len(anyio.get_running_tasks()))

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(look)
                    result = await scheduler.run()
            return result, sink.events, at_redis, tasks

    result, events, at_redis, tasks = anyio.run(go)
    assert result.status is RunStatus.SUCCEEDED
    assert verify_events([events]).ok
    # cpu: one in Redis's queue at most (the window is the cap), the locked step beside it.
    assert max(at_redis) <= 2, at_redis
    assert max(tasks) < 20, tasks  # never one task per waiting step
    assert len(events_named(events, "step_queued")) == 32
    started = [e["step"] for e in events_named(events, "step_started")]
    # t0 was in Redis's queue first; then the highest priority, then FIFO (the locked one
    # goes whenever its lock and a slot are free).
    expected = ["t0", "urgent", *(f"t{i}" for i in range(1, 30))]
    assert [s for s in started if s != "locked"] == expected


def test_on_redis_a_cut_stream_leaves_nothing_queued_or_held(redis_server: Any) -> None:
    """Cut while one step runs, one waits in Redis (the window) and three wait in the run:
    every step ends cancelled, and Redis has no holder or waiter of the run left."""
    plan = plan_from(
        [
            stream(
                "s",
                [sleep_step(f"t{i}", "cpu-agent", 5, needs=[]) for i in range(5)],
                timeline="0s..1s",
            )
        ],
        caps={"cpu": 1, "io": 3, "network": 2, "light": None},
    )

    async def go() -> tuple[Any, list[dict[str, Any]], Any]:
        async with RedisCoordinator(
            redis_server.url, namespace=f"t{secrets.token_hex(4)}", lease_s=10
        ) as coordinator:
            sink = MemorySink()
            scheduler = Scheduler(
                plan,
                run_id="r",
                coordinator=coordinator,
                registry=builtin_registry(),
                events=EventLog("r", [sink]),
            )
            with anyio.fail_after(60):
                result = await scheduler.run()
            return result, sink.events, await coordinator.snapshot()

    result, events, snap = anyio.run(go)
    assert result.streams["s"].status is StreamStatus.FAILED
    assert set(result.streams["s"].steps.values()) == {StepStatus.CANCELLED}
    assert len(result.streams["s"].steps) == 5
    unstarted = [e["step"] for e in events_named(events, "step_finished", started=False)]
    assert sorted(unstarted) == ["t1", "t2", "t3", "t4"]
    assert snap.holders == () and snap.waiters == ()
    assert verify_events([events]).ok
