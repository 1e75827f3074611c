"""The coordination contract: every backend must pass these unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from foundation.errors import LockWaitTimeout
from orchestrator.coordination import Coordinator, InProcessCoordinator, Need
from orchestrator.coordination.base import Blocker, Grant, OnBlocked
from tests.servers import open_redis_coordinator


@pytest.fixture(params=["memory", "redis"])
async def coordinator(request: pytest.FixtureRequest) -> AsyncIterator[Coordinator]:
    """Every backend, unchanged tests: in-process, and Redis on a real redis-server."""
    if request.param == "memory":
        yield InProcessCoordinator()
    else:
        async with open_redis_coordinator(request.getfixturevalue("redis_server")) as coord:
            yield coord


def need(
    holder: str,
    cls: str = "cpu",
    cap: int | None = 2,
    locks: tuple[str, ...] = (),
    priority: int = 2,
) -> Need:
    return Need(holder=holder, resource_class=cls, cap=cap, locks=locks, priority=priority)


async def test_grants_up_to_cap_then_queues(coordinator: Coordinator) -> None:
    a = await coordinator.acquire(need("a"))
    b = await coordinator.acquire(need("b"))
    with pytest.raises(LockWaitTimeout):
        await coordinator.acquire(need("c"), timeout_s=0.2)
    await coordinator.release(a)
    c = await coordinator.acquire(need("c"), timeout_s=5)
    snap = await coordinator.snapshot()
    assert sorted(h.holder for h in snap.holders) == ["b", "c"]
    assert snap.waiters == ()
    await coordinator.release(b)
    await coordinator.release(c)


async def test_lock_is_exclusive_and_fences_increase(coordinator: Coordinator) -> None:
    first = await coordinator.acquire(need("a", cap=None, locks=("redis",)))
    blocked: list[str] = []
    got: list[int] = []

    async def second() -> None:
        grant = await coordinator.acquire(
            need("b", cap=None, locks=("redis",)),
            timeout_s=5,
            on_blocked=lambda bs: blocked.extend(b.resource for b in bs),
        )
        got.append(grant.fences["redis"])
        await coordinator.release(grant)

    async with anyio.create_task_group() as tg:
        tg.start_soon(second)
        await anyio.sleep(0.1)
        assert got == []  # still waiting: the lock is held
        await coordinator.release(first)
    assert blocked == ["redis"]
    assert got and got[0] > first.fences["redis"]


async def test_all_or_nothing(coordinator: Coordinator) -> None:
    """A waiter needing two locks holds neither while one is taken."""
    x = await coordinator.acquire(need("x", cap=None, locks=("database",)))
    order: list[str] = []

    async def both() -> None:
        grant = await coordinator.acquire(
            need("both", cap=None, locks=("redis", "database")), timeout_s=5
        )
        order.append("both")
        await coordinator.release(grant)

    async with anyio.create_task_group() as tg:
        tg.start_soon(both)
        await anyio.sleep(0.1)
        # "both" waits for database; redis must still be free for others meanwhile.
        r = await coordinator.acquire(need("r", cap=None, locks=("redis",)), timeout_s=1)
        order.append("r")
        await coordinator.release(r)
        await coordinator.release(x)
    assert order == ["r", "both"]


async def test_priority_then_fifo(coordinator: Coordinator) -> None:
    hold = await coordinator.acquire(need("hold", cap=1))
    served: list[str] = []

    async def wait(name: str, priority: int) -> None:
        grant = await coordinator.acquire(need(name, cap=1, priority=priority), timeout_s=5)
        served.append(name)
        await coordinator.release(grant)

    async with anyio.create_task_group() as tg:
        for name, priority in [("low1", 3), ("med1", 2), ("crit", 0), ("med2", 2)]:
            tg.start_soon(wait, name, priority)
            await anyio.sleep(0.02)
        snap = await coordinator.snapshot()
        assert [w.holder for w in snap.waiters] == ["crit", "med1", "med2", "low1"]
        await coordinator.release(hold)
    assert served == ["crit", "med1", "med2", "low1"]


async def test_cancelled_waiter_leaves_nothing_behind(coordinator: Coordinator) -> None:
    hold = await coordinator.acquire(need("hold", cap=1, locks=("redis",)))
    with anyio.move_on_after(0.1):
        await coordinator.acquire(need("gone", cap=1, locks=("redis",)))
    snap = await coordinator.snapshot()
    assert [w.holder for w in snap.waiters] == []
    await coordinator.release(hold)
    again = await coordinator.acquire(need("again", cap=1, locks=("redis",)), timeout_s=1)
    await coordinator.release(again)
    snap = await coordinator.snapshot()
    assert snap.holders == () and snap.class_usage.get("cpu", 0) == 0


async def test_shared_state_compare_and_set(coordinator: Coordinator) -> None:
    assert await coordinator.state_get("k") is None
    assert await coordinator.state_cas("k", {"n": 1}, expected_version=0) == 1
    assert await coordinator.state_cas("k", {"n": 2}, expected_version=0) is None
    assert await coordinator.state_cas("k", {"n": 2}, expected_version=1) == 2
    value = await coordinator.state_get("k")
    assert value is not None and value.value == {"n": 2} and value.version == 2


async def test_a_waiter_is_told_again_when_its_lock_changes_hands(
    coordinator: Coordinator,
) -> None:
    """What blocks a waiter is reported again when the lock passes to another holder, so a
    step's ``held by`` never names a holder that has let go (issue 17)."""
    first = await coordinator.acquire(need("restart", cap=None, locks=("redis",)))
    told: dict[str, list[tuple[str, ...]]] = {"validate": [], "later": []}
    queued = {name: anyio.Event() for name in told}
    grants: dict[str, Grant] = {}
    handed_over = anyio.Event()

    def blocked_of(name: str) -> OnBlocked:
        def blocked(blockers: tuple[Blocker, ...]) -> None:
            told[name].append(tuple(h for b in blockers for h in b.holders))
            queued[name].set()
            if told[name][-1] == ("validate",):
                handed_over.set()

        return blocked

    async def wait_for(name: str) -> None:
        grants[name] = await coordinator.acquire(
            need(name, cap=None, locks=("redis",)), timeout_s=20, on_blocked=blocked_of(name)
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for, "validate")
        await queued["validate"].wait()
        tg.start_soon(wait_for, "later")
        await queued["later"].wait()
        assert told["later"][-1] == ("restart",)
        await coordinator.release(first)  # "validate" takes redis; "later" still waits
        with anyio.fail_after(15):
            await handed_over.wait()
        await coordinator.release(grants["validate"])
    await coordinator.release(grants["later"])
    assert told["validate"] == [("restart",)]  # told once: granted when the holder left
    assert told["later"] == [("restart",), ("validate",)]
