"""The Redis coordination backend on a real redis-server: what one process can observe.

Several ``RedisCoordinator`` instances in one test stand for several orchestrator
processes: each has its own connections, renewal thread and process id, and they share
only Redis. Tests with real OS processes are in ``test_redis_processes.py``.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import redis
import structlog

from foundation.errors import CoordinatorUnavailable, LockWaitTimeout
from orchestrator.coordination import Coordinator, Need
from orchestrator.coordination.redis import RedisCoordinator, redact_url

if TYPE_CHECKING:
    from tests.servers import OpenCoordinator, RedisServer


LEASE_S = 1.0


def test_backend_implements_the_protocol() -> None:
    assert isinstance(RedisCoordinator("redis://localhost"), Coordinator)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@db:6379/0", "redis://:***@db:6379/0"),
        ("rediss://app:s3cret@db.example:6380/2", "rediss://app:***@db.example:6380/2"),
        ("redis://db:6379/0?password=s3cret&db=1", "redis://db:6379/0?password=***&db=1"),
        ("redis://app@db/0", "redis://app@db/0"),
        ("redis://:s3cret@[::1]:6379", "redis://:***@[::1]:6379"),
        ("redis://:s3cret@db:port", "<unparseable URL>"),
    ],
)
def test_redact_url_hides_passwords(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def expect_unavailable(url: str) -> CoordinatorUnavailable:
    with pytest.raises(CoordinatorUnavailable) as caught:
        async with RedisCoordinator(url, namespace="t", connect_timeout_s=2.0):
            pass
    return caught.value


async def test_wrong_password_is_a_clear_error(redis_server: RedisServer) -> None:
    error = await expect_unavailable(redis_server.url_with("not-the-password"))
    assert "authentication failed" in str(error)
    assert f"127.0.0.1:{redis_server.port}" in str(error)
    assert "not-the-password" not in str(error) and redis_server.password not in str(error)
    assert error.where == f"redis://:***@127.0.0.1:{redis_server.port}/0"


async def test_missing_password_is_a_clear_error(redis_server: RedisServer) -> None:
    error = await expect_unavailable(redis_server.url_with(None))
    assert "requires a password" in str(error) and "redis://:PASSWORD@" in error.fix
    assert error.where == f"redis://127.0.0.1:{redis_server.port}/0"


async def test_acl_user_from_the_url(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.acl_setuser(
        "orch-acl",
        enabled=True,
        passwords=["+acl-secret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    admin.close()
    await anyio.sleep(redis_server.quiet_left_s(LEASE_S))
    url = f"redis://orch-acl:acl-secret@127.0.0.1:{redis_server.port}/0"
    async with RedisCoordinator(url, namespace="acl", lease_s=LEASE_S) as coord:
        assert coord.where == f"redis://orch-acl:***@127.0.0.1:{redis_server.port}/0"
        await coord.release(await coord.acquire(Need("a", "cpu", 1, ("db",)), timeout_s=5))
    error = await expect_unavailable(url.replace("acl-secret", "wrong-secret"))
    assert "authentication failed" in str(error) and "orch-acl:***@" in str(error)
    assert "wrong-secret" not in str(error)


async def test_acl_user_without_scripting_is_a_clear_error(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.acl_setuser(
        "orch-ro",
        enabled=True,
        passwords=["+ro-secret"],
        keys=["*"],
        commands=["+@read", "+ping", "+hello", "+client"],
    )
    admin.close()
    url = f"redis://orch-ro:ro-secret@127.0.0.1:{redis_server.port}/0"
    error = await expect_unavailable(url)
    assert "may not do what the coordinator needs" in str(error)
    assert "ro-secret" not in str(error) and "EVALSHA" in error.fix


async def test_unreachable_host_is_a_clear_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    error = await expect_unavailable(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert time.monotonic() - started < 10  # fails fast, no endless retry
    assert "cannot connect" in str(error) and "hunter2" not in str(error)
    assert f"redis://:***@127.0.0.1:{port}/0" in str(error)


async def test_tls_connection(tls_redis: RedisServer) -> None:
    await anyio.sleep(tls_redis.quiet_left_s(LEASE_S))
    async with RedisCoordinator(tls_redis.url, namespace="tls", lease_s=LEASE_S) as coord:
        grant = await coord.acquire(Need("a", "cpu", 1, ("db",)), timeout_s=5)
        assert grant.fences["db"] > 0
        await coord.release(grant)
    error = await expect_unavailable(tls_redis.url_with(tls_redis.password, tls=False))
    assert tls_redis.password not in str(error)


async def test_processes_share_caps_and_locks(open_coordinator: OpenCoordinator) -> None:
    async with (
        open_coordinator(lease_s=LEASE_S) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        first = await one.acquire(Need("p1/a", "gpu", 1, ("db",)))
        with pytest.raises(LockWaitTimeout):  # the class cap is shared...
            await two.acquire(Need("p2/b", "gpu", 1), timeout_s=0.3)
        with pytest.raises(LockWaitTimeout):  # ...and so is the lock
            await two.acquire(Need("p2/c", "cpu", None, ("db",)), timeout_s=0.3)
        with pytest.raises(ValueError, match="already holds or waits"):
            # holder names are global (but for needs granted without Redis: _local)
            await two.acquire(Need("p1/a", "cpu", 4))
        snap = await two.snapshot()
        assert [h.holder for h in snap.holders] == ["p1/a"]
        assert snap.class_usage["gpu"] == 1 and snap.fences["db"] == first.fences["db"]
        await one.release(first)
        second = await two.acquire(Need("p2/c", "cpu", None, ("db",)), timeout_s=2)
        assert second.fences["db"] > first.fences["db"]
        await two.release(second)


async def test_release_wakes_a_waiter_in_another_process_at_once(
    open_coordinator: OpenCoordinator,
) -> None:
    """Hand-offs take a round trip or two, far below every fallback timer (lease / 3)."""
    async with (
        open_coordinator(lease_s=LEASE_S) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        delays: list[float] = []
        for i in range(5):
            held = await one.acquire(Need(f"h{i}", "io", None, ("db",)))
            released = [0.0]

            async def wait(name: str, released: list[float] = released) -> None:
                grant = await two.acquire(Need(name, "io", None, ("db",)), timeout_s=5)
                delays.append(time.monotonic() - released[0])
                await two.release(grant)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, f"w{i}")
                await anyio.sleep(0.05)  # queued behind the holder
                released[0] = time.monotonic()
                await one.release(held)
    assert max(delays) < LEASE_S / 3 / 2


async def test_a_lost_wake_up_is_made_up_for(open_coordinator: OpenCoordinator) -> None:
    """With its inbox unread, a waiter still learns of its grant, from the renewal."""
    async with (
        open_coordinator(lease_s=LEASE_S) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        inbox, client = two._inbox, two._client  # stop its inbox reader: wake-ups get lost
        assert inbox is not None and client is not None
        inbox.signal_stop()
        await client.rpush(two._inbox_key, "stop")
        await anyio.to_thread.run_sync(inbox.join, 5.0)
        held = await one.acquire(Need("h", "io", None, ("db",)))
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                grant = await two.acquire(Need("w", "io", None, ("db",)), timeout_s=5)
                await two.release(grant)

            tg.start_soon(wait)
            await anyio.sleep(0.1)
            released = time.monotonic()
            await one.release(held)
        assert time.monotonic() - released < 2 * LEASE_S  # a renewal period, with margin


async def test_stalled_event_loop_loses_its_lease(open_coordinator: OpenCoordinator) -> None:
    async with open_coordinator(lease_s=LEASE_S) as stalled:
        grant = await stalled.acquire(
            Need(
                "run/s/stuck",
                "gpu",
                1,
                ("db",),
                labels={"run_id": "run", "stream": "s", "step": "stuck"},
            )
        )
        with structlog.testing.capture_logs() as logs:
            # A synchronous call blocks the loop past the lease: it must not keep the lock.
            time.sleep(2.5 * LEASE_S)  # noqa: ASYNC251
            with anyio.fail_after(1):
                await grant.lost.wait()
        lost = [entry for entry in logs if entry["event"] == "lock_lost"]
        assert lost == [
            {
                "event": "lock_lost",
                "log_level": "warning",
                "resource": "db",
                "fence": grant.fences["db"],
                "holder": "run/s/stuck",
                "reason": "lease could not be renewed in time",
                "coordinator": stalled.where,
                "run_id": "run",
                "stream": "s",
                "step": "stuck",
            }
        ]
        async with open_coordinator(namespace=stalled.namespace, lease_s=LEASE_S) as other:
            taken = await other.acquire(Need("other", "gpu", 1, ("db",)), timeout_s=2)
            assert taken.fences["db"] > grant.fences["db"]
            await stalled.release(grant)  # harmless: the newer grant stays
            snap = await other.snapshot()
            assert [h.holder for h in snap.holders] == ["other"]
            await other.release(taken)


async def test_busy_event_loop_keeps_its_lease(open_coordinator: OpenCoordinator) -> None:
    """Renewal runs on its own thread: a loop busy with many tasks does not starve it."""
    async with open_coordinator(lease_s=LEASE_S) as coord:
        grant = await coord.acquire(Need("busy", "gpu", 1, ("db",)))

        async def spin() -> None:
            end = time.monotonic() + 2 * LEASE_S
            while time.monotonic() < end:
                time.sleep(0.01)  # noqa: ASYNC251  (a CPU-bound step, yielding often)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(spin)
        assert not grant.lost.is_set()
        snap = await coord.snapshot()
        assert [h.holder for h in snap.holders] == ["busy"]
        await coord.release(grant)


async def test_unreachable_redis_loses_holders_and_refuses_grants(
    fresh_redis: RedisServer,
) -> None:
    await anyio.sleep(fresh_redis.quiet_left_s(LEASE_S))
    async with RedisCoordinator(
        fresh_redis.url, namespace="outage", lease_s=LEASE_S, outage_grace_s=0.5
    ) as coord:
        grant = await coord.acquire(Need("h", "gpu", 1, ("db",)))
        fresh_redis.kill()
        # Told before the lease could have run out in Redis (plus a margin for slow CI).
        with anyio.fail_after(LEASE_S + 0.5):
            await grant.lost.wait()
        with pytest.raises(CoordinatorUnavailable) as caught:
            await coord.acquire(Need("new", "gpu", 1), timeout_s=10)
        assert fresh_redis.password not in str(caught.value)
        fresh_redis.start()
        # Back, but empty: no grant until every lease from before could have ended.
        late = await coord.acquire(Need("late", "gpu", 1, ("db",)), timeout_s=10)
        assert late.fences["db"] > grant.fences["db"]
        await coord.release(grant)
        await coord.release(late)


async def test_waiters_in_the_queue_survive_a_restart(fresh_redis: RedisServer) -> None:
    await anyio.sleep(fresh_redis.quiet_left_s(LEASE_S))
    async with RedisCoordinator(
        fresh_redis.url, namespace="q", lease_s=LEASE_S, outage_grace_s=10
    ) as coord:
        holder = await coord.acquire(Need("h", "gpu", 1))
        served: list[str] = []

        async def wait(name: str) -> None:
            grant = await coord.acquire(Need(name, "gpu", 1), timeout_s=20)
            served.append(name)
            await coord.release(grant)

        async with anyio.create_task_group() as tg:
            for name in ("w1", "w2"):
                tg.start_soon(wait, name)
                await anyio.sleep(0.05)
            fresh_redis.restart(down_s=0.2)
        assert sorted(served) == ["w1", "w2"]
        assert holder.lost.is_set()
        await coord.release(holder)


async def test_leaving_gives_back_everything(open_coordinator: OpenCoordinator) -> None:
    async with open_coordinator(lease_s=LEASE_S) as watcher:
        async with open_coordinator(namespace=watcher.namespace, lease_s=LEASE_S) as leaving:
            await leaving.acquire(Need("a", "gpu", 1, ("db",)))
            await leaving.acquire(Need("b", "cpu", None, ("cache",)))
            assert len((await watcher.snapshot()).holders) == 2
        snap = await watcher.snapshot()
        assert snap.holders == () and snap.class_usage == {"gpu": 0, "cpu": 0}
        with pytest.raises(CoordinatorUnavailable, match="closing"):
            await leaving.acquire(Need("c", "gpu", 1))


async def test_namespaces_do_not_share_locks(open_coordinator: OpenCoordinator) -> None:
    async with open_coordinator(lease_s=LEASE_S) as one, open_coordinator(lease_s=LEASE_S) as two:
        a = await one.acquire(Need("a", "gpu", 1, ("db",)))
        b = await two.acquire(Need("a", "gpu", 1, ("db",)), timeout_s=1)
        await one.release(a)
        await two.release(b)


async def test_shared_state_between_processes(open_coordinator: OpenCoordinator) -> None:
    async with (
        open_coordinator(lease_s=LEASE_S) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        assert await one.state_cas("plan", {"phase": 1}, expected_version=0) == 1
        assert await two.state_cas("plan", {"phase": 9}, expected_version=0) is None
        seen = await two.state_get("plan")
        assert seen is not None and seen.value == {"phase": 1} and seen.version == 1
        assert await two.state_cas("plan", {"phase": 2}, expected_version=1) == 2
        final = await one.state_get("plan")
        assert final is not None and (final.value, final.version) == ({"phase": 2}, 2)


async def test_run_state_and_event_stream(open_coordinator: OpenCoordinator) -> None:
    async with (
        open_coordinator(lease_s=LEASE_S, events_maxlen=10) as one,
        open_coordinator(namespace=one.namespace, lease_s=LEASE_S) as two,
    ):
        await one.run_state_set("r1", "step:s/a", {"status": "running"})
        await one.run_state_set("r1", "stream:s", {"status": "open"})
        await two.run_state_set("r1", "step:s/a", {"status": "succeeded"})
        assert await one.run_state_get("r1") == {
            "step:s/a": {"status": "succeeded"},
            "stream:s": {"status": "open"},
        }
        assert await one.run_state_get("nope") == {}

        await one.append_event("r1", {"event": "run_started", "n": 0})
        from_start: list[dict[str, object]] = []
        live: list[dict[str, object]] = []

        async def follow(
            into: list[dict[str, object]], start: bool, count: int, run: str = "r1"
        ) -> None:
            async with contextlib.aclosing(two.follow_events(run, from_start=start)) as events:
                async for event in events:
                    into.append(event)
                    if len(into) == count:
                        return

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow, from_start, True, 3)
                tg.start_soon(follow, live, False, 2)
                await anyio.sleep(0.2)  # both followers are reading
                await one.append_event("r1", {"event": "step_started", "n": 1})
                await one.append_event("r1", {"event": "step_finished", "n": 2})
        assert [e["n"] for e in from_start] == [0, 1, 2]
        assert [e["n"] for e in live] == [1, 2]

        for n in range(300):  # the stream is capped (approximately) at events_maxlen
            await one.append_event("r2", {"n": n})
        kept: list[dict[str, object]] = []
        with anyio.move_on_after(0.5):
            await follow(kept, True, 10_000, "r2")
        assert kept[-1] == {"n": 299} and len(kept) < 300


async def test_a_namespace_locked_in_the_older_layout_is_refused(redis_server: RedisServer) -> None:
    # Versions before owner and fence shared one field kept owners in the `o` hash: this
    # version would not see those holders, so it refuses to share the namespace with them.
    admin = redis.Redis.from_url(redis_server.url)
    admin.hset("{t}:o", "db", "holder")
    try:
        error = await expect_unavailable(redis_server.url)
        assert "older orchestrator version" in str(error) and "{t}:o" in str(error)
        assert "ORCH_NAMESPACE" in error.fix
    finally:
        admin.delete("{t}:o")
        admin.close()
    async with RedisCoordinator(redis_server.url, namespace="t", connect_timeout_s=2.0):
        pass  # once the key is gone the namespace is usable again
