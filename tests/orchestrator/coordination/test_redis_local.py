"""The Redis backend grants a need for an uncapped class without locks with no round trip."""

from __future__ import annotations

import pytest
import redis

from orchestrator.coordination import Need
from tests.servers import RedisServer, open_redis_coordinator


def _script_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))
    finally:
        client.close()


async def test_light_unlocked_needs_make_no_round_trip(fresh_redis: RedisServer) -> None:
    async with open_redis_coordinator(fresh_redis) as coordinator:
        before = _script_calls(fresh_redis.url)
        grants = [await coordinator.acquire(Need(f"r/s/{i}", "light", None)) for i in range(50)]
        assert all(not g.leased and g.fences == {} for g in grants)
        snap = await coordinator.snapshot()  # one script call
        assert sorted(h.holder for h in snap.holders) == sorted(f"r/s/{i}" for i in range(50))
        assert snap.class_usage["light"] == 50
        for grant in grants:
            await coordinator.release(grant)
            await coordinator.release(grant)  # twice: harmless, as for every grant
        assert _script_calls(fresh_redis.url) == before + 1
        assert (await coordinator.snapshot()).holders == ()


async def test_a_capped_or_locked_need_still_goes_through_redis(fresh_redis: RedisServer) -> None:
    async with open_redis_coordinator(fresh_redis) as coordinator:
        before = _script_calls(fresh_redis.url)
        locked = await coordinator.acquire(Need("a", "light", None, ("db",)))
        capped = await coordinator.acquire(Need("b", "light", 3))
        assert locked.leased and capped.leased and locked.fences["db"] > 0
        await coordinator.release(locked)
        await coordinator.release(capped)
        assert _script_calls(fresh_redis.url) == before + 4


async def test_a_holder_is_unique_across_local_and_redis_grants(
    fresh_redis: RedisServer,
) -> None:
    async with open_redis_coordinator(fresh_redis) as coordinator:
        local = await coordinator.acquire(Need("same", "light", None))
        with pytest.raises(ValueError, match="already holds or waits"):
            await coordinator.acquire(Need("same", "light", None))
        with pytest.raises(ValueError, match="already holds or waits"):
            await coordinator.acquire(Need("same", "light", None, ("db",)))
        await coordinator.release(local)
        remote = await coordinator.acquire(Need("same", "light", None, ("db",)))
        with pytest.raises(ValueError, match="already holds or waits"):
            await coordinator.acquire(Need("same", "light", None))
        await coordinator.release(remote)
