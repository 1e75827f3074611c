"""Fairness on Redis is the fairness of base.py, as the in-process backend implements it.

Each scenario runs on both backends and asserts the same service order. On Redis the
waiters come from two coordinators (two processes, as far as Redis can tell), so the order
is decided by the queue in Redis, not by either process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import pytest

from foundation.errors import LockWaitTimeout
from orchestrator.coordination import Coordinator, Grant, InProcessCoordinator, Need

if TYPE_CHECKING:
    from tests.servers import OpenCoordinator


#: Opens two coordinators sharing one queue: (first, second).
Pair = Callable[..., AbstractAsyncContextManager[tuple[Coordinator, Coordinator]]]


@pytest.fixture(params=["memory", "redis"])
def pair(request: pytest.FixtureRequest) -> Pair:
    if request.param == "memory":

        @asynccontextmanager
        async def memory(**options: float) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
            coordinator = InProcessCoordinator(**options)
            yield coordinator, coordinator

        return memory
    open_coordinator: OpenCoordinator = request.getfixturevalue("open_coordinator")

    @asynccontextmanager
    async def redis(**options: float) -> AsyncIterator[tuple[Coordinator, Coordinator]]:
        async with (
            open_coordinator(lease_s=1.0, **options) as one,
            open_coordinator(namespace=one.namespace, lease_s=1.0, **options) as two,
        ):
            yield one, two

    return redis


async def serve_in_order(
    coordinators: tuple[Coordinator, Coordinator],
    blocker: Grant,
    waiters: list[tuple[str, Need]],
    gap_s: float = 0.02,
) -> list[str]:
    """Queue ``waiters`` (alternating coordinators) behind ``blocker``, release it, and
    return the order in which they were served (each releases at once)."""
    served: list[str] = []

    async def wait(coordinator: Coordinator, name: str, need: Need) -> None:
        grant = await coordinator.acquire(need, timeout_s=10)
        served.append(name)
        await coordinator.release(grant)

    async with anyio.create_task_group() as tg:
        for index, (name, need) in enumerate(waiters):
            tg.start_soon(wait, coordinators[index % 2], name, need)
            await anyio.sleep(gap_s)
        await coordinators[0].release(blocker)
    return served


async def test_priority_then_fifo_across_processes(pair: Pair) -> None:
    async with pair() as (one, two):
        hold = await one.acquire(Need("hold", "gpu", 1))
        waiters = [
            ("low", Need("low", "gpu", 1, priority=3)),
            ("med1", Need("med1", "gpu", 1, priority=2)),
            ("crit", Need("crit", "gpu", 1, priority=0)),
            ("med2", Need("med2", "gpu", 1, priority=2)),
        ]
        served = await serve_in_order((one, two), hold, waiters)
    assert served == ["crit", "med1", "med2", "low"]


async def test_aging_lifts_a_long_waiter_above_newer_priorities(pair: Pair) -> None:
    async with pair(aging_s=0.1) as (one, two):
        hold = await one.acquire(Need("hold", "gpu", 1))
        # "low" waits 0.5 s, five aging steps, more than the three levels between them.
        waiters = [
            ("low", Need("low", "gpu", 1, priority=3)),
            ("crit", Need("crit", "gpu", 1, priority=0)),
        ]
        served = await serve_in_order((one, two), hold, waiters, gap_s=0.5)
    assert served == ["low", "crit"]


async def test_backfill_serves_a_later_waiter_whose_need_is_free(pair: Pair) -> None:
    async with pair() as (one, two):
        db = await one.acquire(Need("db-holder", "io", None, ("db",)))
        blocked = anyio.Event()
        order: list[str] = []

        async def wants_db() -> None:
            grant = await two.acquire(
                Need("wants-db", "io", None, ("db",)), on_blocked=lambda _: blocked.set()
            )
            order.append("wants-db")
            await two.release(grant)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wants_db)
            await blocked.wait()
            # Older waiter first in line, but its lock is taken: a newer one passes it.
            cache = await one.acquire(Need("wants-cache", "io", None, ("cache",)), timeout_s=1)
            order.append("wants-cache")
            await one.release(cache)
            await one.release(db)
    assert order == ["wants-cache", "wants-db"]


@pytest.mark.parametrize("starving", [True, False], ids=["starving", "not-starving"])
async def test_a_starving_waiter_reserves_what_it_needs(pair: Pair, starving: bool) -> None:
    """Needing x and y while x is held, a starving waiter keeps y once y is free."""
    async with pair(starve_after_s=0.2 if starving else 60.0) as (one, two):
        x = await one.acquire(Need("x-holder", "io", None, ("x",)))
        y = await one.acquire(Need("y-holder", "io", None, ("y",)))
        got_both = anyio.Event()

        async def needs_both() -> None:
            # Critical: its aged key is its enqueue time, so it starves after starve_after_s.
            need = Need("both", "io", None, ("x", "y"), priority=0)
            grant = await two.acquire(need, timeout_s=10)
            got_both.set()
            await two.release(grant)

        async with anyio.create_task_group() as tg:
            tg.start_soon(needs_both)
            await anyio.sleep(0.4)  # older than starve_after_s when starving
            await one.release(y)
            if starving:
                with pytest.raises(LockWaitTimeout):
                    await one.acquire(Need("y-again", "io", None, ("y",)), timeout_s=0.3)
            else:
                again = await one.acquire(Need("y-again", "io", None, ("y",)), timeout_s=1)
                await one.release(again)
            assert not got_both.is_set()
            await one.release(x)
            with anyio.fail_after(5):
                await got_both.wait()


async def test_snapshot_lists_waiters_in_service_order(pair: Pair) -> None:
    async with pair() as (one, two):
        hold = await one.acquire(Need("hold", "gpu", 1, ("db",)))

        async def wait(need: Need) -> None:
            await two.acquire(need)  # cancelled below, which leaves the queue

        async with anyio.create_task_group() as tg:
            for name, priority in [("b", 3), ("a", 1), ("c", 1)]:
                tg.start_soon(
                    wait, Need(name, "gpu", 1, ("db",), priority=priority, labels={"step": name})
                )
                await anyio.sleep(0.02)
            snap = await one.snapshot()
            tg.cancel_scope.cancel()
        assert [w.holder for w in snap.waiters] == ["a", "c", "b"]
        assert [w.labels["step"] for w in snap.waiters] == ["a", "c", "b"]
        assert [h.holder for h in snap.holders] == ["hold"]
        assert snap.holders[0].fences == hold.fences and snap.fences == hold.fences
        assert snap.class_usage == {"gpu": 1}
        assert all(w.waited_s > 0 for w in snap.waiters)
        await one.release(hold)
        snap = await two.snapshot()
        assert snap.waiters == () and snap.holders == ()
