"""Expired entries on the Redis backend: a holder whose lease ran out blocks nothing.

Uncontended acquires and releases take a fast path that purges nothing (``fast.lua``); these
tests pin down that an expired holder still gives way wherever it is in the way: its lock,
its class slot, its holder name, and that snapshots never show it. The expired holder is
written straight into Redis as a process that died would have left it (its lease ended in
the past), so no renewal can revive it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from orchestrator.coordination import Need

if TYPE_CHECKING:
    from tests.servers import OpenCoordinator, RedisServer

LEASE_S = 1.0


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def leave_expired(
    client: redis.Redis,
    namespace: str,
    holder: str,
    resource_class: str,
    cap: int,
    lock: str | None = None,
    token: int = 5,
) -> None:
    """Write ``holder``'s grant as a dead process leaves it: its lease ended long ago."""
    p = "{" + namespace + "}:"
    record = {
        "g": "dead.0",
        "t": "1",
        "f": [str(token)] if lock else [],
        "c": resource_class,
        "l": [lock] if lock else [],
        "p": "dead-process",
        "lab": {},
    }
    client.hset(p + "h", holder, json.dumps(record, separators=(",", ":")))
    client.zadd(p + "x", {"h" + holder: 1})
    client.zadd(p + "c:" + resource_class, {holder: 1})
    client.hset(p + "caps", resource_class, cap)
    if lock:
        client.hset(p + "l", lock, f"{token} {holder}")


async def test_an_expired_holder_gives_way_to_an_acquire_of_its_lock(
    open_coordinator: OpenCoordinator, client: redis.Redis
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        leave_expired(client, coord.namespace, "dead/a", "io", -1, lock="db", token=5)
        grant = await coord.acquire(Need("p/b", "io", None, ("db",)), timeout_s=2)
        assert grant.fences["db"] > 5  # fences keep increasing across the purge
        assert [h.holder for h in (await coord.snapshot()).holders] == ["p/b"]
        await coord.release(grant)


async def test_an_expired_holder_gives_way_to_an_acquire_of_its_class_slot(
    open_coordinator: OpenCoordinator, client: redis.Redis
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        leave_expired(client, coord.namespace, "dead/a", "gpu", 1)
        grant = await coord.acquire(Need("p/b", "gpu", 1), timeout_s=2)
        snap = await coord.snapshot()
        assert [h.holder for h in snap.holders] == ["p/b"]
        assert snap.class_usage["gpu"] == 1
        await coord.release(grant)


async def test_an_expired_holder_gives_way_to_an_acquire_under_its_name(
    open_coordinator: OpenCoordinator, client: redis.Redis
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        leave_expired(client, coord.namespace, "dead/a", "io", -1, lock="old", token=7)
        grant = await coord.acquire(Need("dead/a", "cpu", None, ("new",)), timeout_s=2)
        await coord.release(grant)
        # The expired grant went as a whole: the lock it held is free too.
        old = await coord.acquire(Need("p/old", "io", None, ("old",)), timeout_s=2)
        assert old.fences["old"] > 7
        await coord.release(old)
        assert (await coord.snapshot()).holders == ()


async def test_an_expired_holder_of_something_else_is_gone_from_the_next_snapshot(
    open_coordinator: OpenCoordinator, client: redis.Redis
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        leave_expired(client, coord.namespace, "dead/a", "io", -1, lock="x")
        # Granted without a purge (nothing of it is in the way)...
        grant = await coord.acquire(Need("p/b", "cpu", None, ("y",)), timeout_s=2)
        await coord.release(grant)
        # ...and a snapshot purges before it looks.
        snap = await coord.snapshot()
        assert snap.holders == ()
        assert snap.fences == {"x": 5, "y": grant.fences["y"]}
