"""The Redis backend's hot path (:mod:`orchestrator.coordination.redis._hot`) on a real
redis-server: calls queued while every connection is busy go out together, a script Redis
forgot is loaded again, and a cancelled sender neither loses nor mixes up others' replies;
and the scripts' compact records keep every lock's fence.
"""

from __future__ import annotations

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

#: Echoes its argument after a busy loop long enough for calls to pile up behind it.
SLOW_ECHO = "local n = 0 for i = 1, tonumber(ARGV[2]) do n = n + 1 end return ARGV[1]"


async def run_all(pool: ScriptPool, sha: str, args: list[list[str]]) -> list[Any]:
    replies: list[Any] = [None] * len(args)

    async def one(i: int) -> None:
        replies[i] = await pool.evalsha(sha, "k", args[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(args)):
            tg.start_soon(one, i)
    return replies


def evalsha_calls(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
    finally:
        client.close()


async def test_a_burst_of_calls_goes_out_in_few_batches_and_each_gets_its_reply(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 2)
    pool = ScriptPool(redis_server.url, connect_timeout_s=5.0, reply_timeout_s=10.0)
    sha = pool.register(SLOW_ECHO)
    batches = 0
    send_queued = pool._send_queued

    async def counted() -> None:
        nonlocal batches
        batches += 1
        await send_queued()

    monkeypatch.setattr(pool, "_send_queued", counted)
    await pool.connect()
    try:
        # The first two calls take the two connections; the slow scripts keep them busy
        # while the other 48 queue, and those go out together.
        args = [[f"call-{i}", "300000" if i < 2 else "1"] for i in range(50)]
        replies = await run_all(pool, sha, args)
    finally:
        await pool.aclose()
    assert replies == [f"call-{i}" for i in range(50)]
    assert batches <= 4


async def test_a_script_redis_forgot_is_loaded_again(redis_server: RedisServer) -> None:
    pool = ScriptPool(redis_server.url, connect_timeout_s=5.0, reply_timeout_s=10.0)
    sha = pool.register(SLOW_ECHO + " -- forgotten")
    try:
        assert await pool.evalsha(sha, "k", ["first", "1"]) == "first"
        client = redis.Redis.from_url(redis_server.url)
        try:
            client.script_flush()
        finally:
            client.close()
        replies = await run_all(pool, sha, [[f"again-{i}", "1"] for i in range(5)])
    finally:
        await pool.aclose()
    assert replies == [f"again-{i}" for i in range(5)]


async def test_an_error_reply_reaches_its_caller_only(redis_server: RedisServer) -> None:
    pool = ScriptPool(redis_server.url, connect_timeout_s=5.0, reply_timeout_s=10.0)
    sha = pool.register("if ARGV[1] == 'bad' then return redis.error_reply('no') end return 1")
    try:
        results: dict[str, Any] = {}

        async def one(arg: str) -> None:
            try:
                results[arg] = await pool.evalsha(sha, "k", [arg])
            except redis.ResponseError as exc:
                results[arg] = str(exc)

        async with anyio.create_task_group() as tg:
            for arg in ["a", "bad", "b"]:
                tg.start_soon(one, arg)
        assert results == {"a": 1, "bad": "no", "b": 1}
        assert await pool.evalsha(sha, "k", ["c"]) == 1  # the connection is still in step
    finally:
        await pool.aclose()


async def test_a_cancelled_sender_leaves_the_calls_queued_behind_it_to_others(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hot, "POOL_SIZE", 1)
    pool = ScriptPool(redis_server.url, connect_timeout_s=5.0, reply_timeout_s=10.0)
    sha = pool.register(SLOW_ECHO + " -- cancel")
    await pool.connect()
    outcome: dict[str, Any] = {}

    async def call(name: str, loops: str) -> None:
        outcome[name] = await pool.evalsha(sha, "k", [name, loops])

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
        assert await pool.evalsha(sha, "k", ["after", "1"]) == "after"
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
    pool = ScriptPool(redis_server.url, connect_timeout_s=5.0, reply_timeout_s=10.0)
    sha = pool.register(SLOW_ECHO + " -- batch")
    await pool.connect()
    outcome: dict[str, Any] = {}
    scopes = {name: anyio.CancelScope() for name in ("blocker", "sender", "rider")}

    async def call(name: str, loops: str) -> None:
        with scopes[name]:
            outcome[name] = await pool.evalsha(sha, "k", [name, loops])

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
        assert await pool.evalsha(sha, "k", ["after", "1"]) == "after"
    finally:
        await pool.aclose()
