"""The Redis backend's hot path (:mod:`orchestrator.coordination.redis._hot`) on a real
redis-server: calls queued while every connection is busy go out together as one script
call, a script Redis forgot is loaded again, and a cancelled sender neither loses nor mixes
up others' replies; and the scripts' compact records keep every lock's fence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import redis

from orchestrator.coordination import Grant, Need
from orchestrator.coordination.redis import _hot
from orchestrator.coordination.redis._hot import ScriptPool

if TYPE_CHECKING:
    from tests.servers import OpenCoordinator, RedisServer

LEASE_S = 1.0

#: ops.lua's contract in small: ARGV[1] is the head, then operations of two arguments (a
#: name, echoed in its result, and the length of a busy loop long enough for calls to pile
#: up behind it); an operation named "bad" fails the whole call.
SLOW_ECHO = """
local out = {}
for i = 2, #ARGV, 2 do
  if ARGV[i] == 'bad' then return redis.error_reply('no') end
  local n = 0
  for _ = 1, tonumber(ARGV[i + 1]) do n = n + 1 end
  out[#out + 1] = ARGV[i]
end
return cjson.encode({ARGV[1], out})
"""


def echo_pool(
    url: str, tag: str, on_reply: Callable[[list[Any]], None] | None = None
) -> ScriptPool:
    """A pool of SLOW_ECHO (``tag`` makes it a script Redis has not seen in this test)."""
    return ScriptPool(
        url,
        source=SLOW_ECHO + f"-- {tag}",
        key="k",
        head=["head"],
        on_reply=on_reply,
        connect_timeout_s=5.0,
        reply_timeout_s=10.0,
    )


async def echo(pool: ScriptPool, name: str, loops: str = "1") -> str:
    reply, (result,) = await pool.call([(name, loops)])
    assert reply[0] == "head"
    return str(result)


async def run_all(pool: ScriptPool, args: list[tuple[str, str]]) -> list[Any]:
    replies: list[Any] = [None] * len(args)

    async def one(i: int) -> None:
        replies[i] = await echo(pool, *args[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(args)):
            tg.start_soon(one, i)
    return replies


def evalsha_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    finally:
        client.close()


async def test_a_burst_of_calls_goes_out_as_few_script_calls_and_each_gets_its_results(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 2)
    replies_seen: list[list[Any]] = []
    pool = echo_pool(redis_server.url, "burst", replies_seen.append)
    await pool.connect()
    await echo(pool, "loads the script")
    replies_seen.clear()
    before = evalsha_calls(redis_server.url)
    try:
        # The first two calls take the two connections; the slow scripts keep them busy
        # while the other 48 queue, and those go out together, as one script call.
        args = [(f"call-{i}", "300000" if i < 2 else "1") for i in range(50)]
        replies = await run_all(pool, args)
        # A call of several operations gets the results of its own.
        _, results = await pool.call([("x", "1"), ("y", "1")])
    finally:
        await pool.aclose()
    assert replies == [f"call-{i}" for i in range(50)]
    assert results == ["x", "y"]
    script_calls = evalsha_calls(redis_server.url) - before
    assert script_calls <= 4 + 1
    assert len(replies_seen) == script_calls  # each reply seen once


async def test_a_long_queue_goes_out_as_several_script_calls_in_one_write(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 1)
    monkeypatch.setattr(_hot, "MAX_BATCH_OPS", 3)
    pool = echo_pool(redis_server.url, "long")
    await pool.connect()
    await echo(pool, "loads the script")
    before = evalsha_calls(redis_server.url)
    try:
        args = [("blocker", "300000"), *((f"call-{i}", "1") for i in range(10))]
        replies = await run_all(pool, args)
    finally:
        await pool.aclose()
    assert replies == [name for name, _ in args]
    assert evalsha_calls(redis_server.url) - before == 1 + 4  # the blocker, then 3+3+3+1


async def test_a_script_redis_forgot_is_loaded_again(redis_server: RedisServer) -> None:
    pool = echo_pool(redis_server.url, "forgotten")
    try:
        assert await echo(pool, "first") == "first"
        client = redis.Redis.from_url(redis_server.url)
        try:
            client.script_flush()
        finally:
            client.close()
        replies = await run_all(pool, [(f"again-{i}", "1") for i in range(5)])
    finally:
        await pool.aclose()
    assert replies == [f"again-{i}" for i in range(5)]


async def test_an_error_reply_fails_the_calls_of_its_script_call_only(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 1)
    pool = echo_pool(redis_server.url, "error")
    await pool.connect()
    results: dict[str, Any] = {}

    async def one(name: str, loops: str = "1") -> None:
        try:
            results[name] = await echo(pool, name, loops)
        except redis.ResponseError as exc:
            results[name] = str(exc)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "blocker", "300000")  # holds the only connection a while
            while pool._idle:
                await anyio.lowlevel.checkpoint()
            for name in ["a", "bad", "b"]:  # queued: one script call carries the three
                tg.start_soon(one, name)
        assert results == {"blocker": "blocker", "a": "no", "bad": "no", "b": "no"}
        assert await echo(pool, "c") == "c"  # the connection is still in step
    finally:
        await pool.aclose()


async def test_a_cancelled_sender_leaves_the_calls_queued_behind_it_to_others(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 1)
    pool = echo_pool(redis_server.url, "cancel")
    await pool.connect()
    outcome: dict[str, Any] = {}

    async def call(name: str, loops: str) -> None:
        outcome[name] = await echo(pool, name, loops)

    sender = anyio.CancelScope()

    async def slow() -> None:
        with sender:
            await call("slow", "30000000")  # its reply is a second or so away

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)  # takes the only connection
            # The pool has no event to wait on: look after each scheduling round.
            while pool._idle:  # until it was sent
                await anyio.lowlevel.checkpoint()
            tg.start_soon(call, "queued", "1")  # waits for the connection
            while not pool._queue:
                await anyio.lowlevel.checkpoint()
            sender.cancel()
        # The slow call's batch ran to its end (shielded, bounded by its timeout), so its
        # reply came; the queued call went out after it, and so does the next.
        assert outcome == {"slow": "slow", "queued": "queued"}
        assert await echo(pool, "after") == "after"
    finally:
        await pool.aclose()


async def test_a_queued_multi_lock_need_gets_a_fence_per_lock_from_another_process(
    open_coordinator: OpenCoordinator,
) -> None:
    """Fences travel as arrays in the need's lock order (records, replies, inbox notes)."""
    async with (
        open_coordinator(lease_s=LEASE_S) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        first = await one.acquire(Need("p1/a", "io", None, ("x", "w")))
        granted: list[Grant] = []
        queued = anyio.Event()

        async def wait_for_both() -> None:
            need = Need("p2/b", "io", None, ("y", "x"))
            granted.append(await two.acquire(need, timeout_s=10, on_blocked=lambda _: queued.set()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_both)
            await queued.wait()
            snap = await one.snapshot()
            assert snap.fences == {"x": first.fences["x"], "w": first.fences["w"]}
            await one.release(first)  # the grant reaches `two`, another process
        (second,) = granted
        assert set(second.fences) == {"y", "x"}
        assert second.fences["x"] > first.fences["x"]
        snap = await two.snapshot()
        (holder,) = snap.holders
        assert holder.holder == "p2/b" and holder.fences == second.fences
        assert snap.fences == {
            "x": second.fences["x"],
            "w": first.fences["w"],
            "y": second.fences["y"],
        }
        await two.release(second)


async def test_cancelling_the_sender_of_a_batch_fails_no_other_call_in_it(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch carries other callers' calls (a shielded release, say): the caller that
    # sends it being cancelled must not fail them. The batch runs to its end (bounded by
    # its timeout) and the sender sees its cancellation at its next checkpoint.
    monkeypatch.setattr(_hot, "POOL_SIZE", 1)
    pool = echo_pool(redis_server.url, "batch")
    await pool.connect()
    outcome: dict[str, Any] = {}
    scopes = {name: anyio.CancelScope() for name in ("blocker", "sender", "rider")}

    async def call(name: str, loops: str) -> None:
        with scopes[name]:
            outcome[name] = await echo(pool, name, loops)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "blocker", "3000000")  # holds the only connection a while
            while pool._idle:
                await anyio.lowlevel.checkpoint()
            tg.start_soon(call, "sender", "30000000")  # first to wait: it sends the batch
            while len(pool._freed) < 1:
                await anyio.lowlevel.checkpoint()
            tg.start_soon(call, "rider", "1")  # queued too: it rides in the sender's batch
            while len(pool._queue) < 2:
                await anyio.lowlevel.checkpoint()
            while pool._queue:  # until the batch with both was sent
                await anyio.lowlevel.checkpoint()
            scopes["sender"].cancel()
        # Before the batch was shielded the rider failed with "the call sending this batch
        # was cancelled". The sender's own reply came too: it had no checkpoint left.
        assert outcome == {"blocker": "blocker", "sender": "sender", "rider": "rider"}
        assert await echo(pool, "after") == "after"
    finally:
        await pool.aclose()
