"""Several OS processes coordinating through one real Redis.

Each worker process (``redis_worker.py``) logs ``step_started`` right after its grant and
``step_finished`` before its release (or as soon as its lease is lost). From the merged
logs of all workers: a class never has more running steps than its cap, no lock is held by
two steps at once, and each lock's fencing tokens increase in the order it was granted.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.coordination import Need

if TYPE_CHECKING:
    from tests.servers import OpenCoordinator, RedisServer


REPO = Path(__file__).resolve().parents[3]
LEASE_S = 1.0
#: The restart test's lease: a holder learns of its loss at least 0.35 lease before the
#: lease ends, and a loaded 2-core CI machine can take a good part of a second to react.
RESTART_LEASE_S = 2.0


class Worker:
    """One ``redis_worker`` process; read its stdout events with :meth:`next_event`."""

    def __init__(self, process: anyio.abc.Process, name: str, stderr: Path) -> None:
        self.process = process
        self.name = name
        self.stderr = stderr
        assert process.stdout is not None
        self._stdout = BufferedByteReceiveStream(process.stdout)

    @classmethod
    async def start(cls, tmp_path: Path, config: dict[str, Any]) -> Worker:
        name = config["worker"]
        stderr = tmp_path / f"{name}.stderr"
        with stderr.open("wb") as err:
            process = await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "tests.orchestrator.coordination.redis_worker",
                    json.dumps(config),
                ],
                cwd=REPO,
                stdout=-1,
                stderr=err,
            )
        return cls(process, name, stderr)

    async def next_event(self, timeout_s: float = 30.0) -> dict[str, Any]:
        try:
            with anyio.fail_after(timeout_s):
                line = await self._stdout.receive_until(b"\n", 1 << 20)
        except (anyio.IncompleteRead, TimeoutError):
            tail = self.stderr.read_text(errors="replace")[-3000:]
            message = f"worker {self.name} said nothing more; its stderr:\n{tail}"
            raise AssertionError(message) from None
        event: dict[str, Any] = json.loads(line)
        return event

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)

    async def aclose(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        with anyio.move_on_after(10, shield=True):
            await self.process.wait()
        await self.process.aclose()


@dataclass(frozen=True, slots=True)
class Run:
    """One step's hold of its need, from the merged logs."""

    key: tuple[str, str, str, int]
    resource_class: str
    locks: tuple[str, ...]
    fences: dict[str, int]
    started: datetime
    finished: datetime
    lost: bool


def read_runs(paths: list[Path]) -> list[Run]:
    started: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    runs: list[Run] = []
    for path in paths:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            key = (record["worker"], record["stream"], record["step"], record["attempt"])
            if record["event"] == "step_started":
                started[key] = record
                continue
            begin = started.pop(key)
            runs.append(
                Run(
                    key=key,
                    resource_class=record["resource_class"],
                    locks=tuple(record["locks"]),
                    fences={k: int(v) for k, v in begin["fences"].items()},
                    started=datetime.fromisoformat(begin["ts"]),
                    finished=datetime.fromisoformat(record["ts"]),
                    lost=record["lost"],
                )
            )
    assert not started, f"steps started but never finished: {sorted(started)}"
    return runs


def check_invariants(runs: list[Run], caps: dict[str, int]) -> dict[str, int]:
    """Assert caps, exclusive locks and increasing fences; return the peak use per class."""
    by_lock: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        for lock in run.locks:
            by_lock[lock].append(run)
    for lock, holds in by_lock.items():
        holds.sort(key=lambda r: r.started)
        for before, after in itertools.pairwise(holds):
            assert after.started >= before.finished, (
                f"lock {lock!r} held twice: {before.key} until {before.finished}, "
                f"{after.key} from {after.started}"
            )
            assert after.fences[lock] > before.fences[lock], (
                f"fencing token of {lock!r} did not increase: {before.key} got "
                f"{before.fences[lock]}, later {after.key} got {after.fences[lock]}"
            )
    peak: dict[str, int] = {}
    for cls, cap in caps.items():
        # A step ending at the instant another starts does not overlap it: ends sort first.
        edges = sorted(
            [(r.started, 1) for r in runs if r.resource_class == cls]
            + [(r.finished, -1) for r in runs if r.resource_class == cls]
        )
        running = 0
        for _, change in edges:
            running += change
            assert running <= cap, f"class {cls!r} ran {running} steps at once, cap {cap}"
            peak[cls] = max(peak.get(cls, 0), running)
    return peak


def steps_config(
    server: RedisServer,
    namespace: str,
    worker: str,
    log: Path,
    steps: list[dict[str, Any]],
    lease_s: float = LEASE_S,
) -> dict[str, Any]:
    return {
        "url": server.url,
        "namespace": namespace,
        "lease_s": lease_s,
        "worker": worker,
        "mode": "steps",
        "log": str(log),
        "steps": steps,
        "outage_grace_s": 30,
    }


def contended_steps(worker: str, hold_s: float) -> list[dict[str, Any]]:
    locks = [["db"], ["cache"], ["db", "cache"], ["queue", "db"], ["queue"], []]
    steps = [
        {"stream": worker, "step": f"gpu{i}", "class": "gpu", "cap": 2, "locks": [], "hold_s": 0.1}
        for i in range(3)
    ]
    steps += [
        {
            "stream": worker,
            "step": f"io{i}",
            "class": "io",
            "cap": 3,
            "locks": lock,
            "hold_s": hold_s,
            "priority": i % 4,
        }
        for i, lock in enumerate(locks)
    ]
    return steps


async def run_workers(tmp_path: Path, configs: list[dict[str, Any]], timeout_s: float) -> None:
    workers = [await Worker.start(tmp_path, config) for config in configs]
    try:
        for worker in workers:
            assert await worker.next_event(timeout_s) == {"event": "running"}
        for worker in workers:
            assert await worker.next_event(timeout_s) == {"event": "done"}
    finally:
        for worker in workers:
            await worker.aclose()


async def test_processes_never_exceed_caps_or_share_locks(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    await anyio.sleep(redis_server.quiet_left_s(LEASE_S))
    namespace = f"procs-{os.getpid()}-{time.monotonic_ns()}"
    logs = [tmp_path / f"w{i}.jsonl" for i in range(3)]
    configs = [
        steps_config(redis_server, namespace, f"w{i}", logs[i], contended_steps(f"w{i}", 0.03))
        for i in range(3)
    ]
    await run_workers(tmp_path, configs, timeout_s=60)
    runs = read_runs(logs)
    assert len(runs) == 27 and not any(r.lost for r in runs)
    peak = check_invariants(runs, {"gpu": 2, "io": 3})
    assert peak["gpu"] == 2  # the cap was really contended, and reached


async def test_sigkilled_holder_frees_its_lock_and_slot_within_a_lease(
    redis_server: RedisServer, open_coordinator: OpenCoordinator, tmp_path: Path
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        config = {
            "url": redis_server.url,
            "namespace": coord._namespace,
            "lease_s": LEASE_S,
            "worker": "victim",
            "mode": "hold",
            "steps": [{"stream": "s", "step": "victim", "class": "gpu", "cap": 1, "locks": ["db"]}],
        }
        victim = await Worker.start(tmp_path, config)
        try:
            held = await victim.next_event()
            assert held["event"] == "granted"
            granted: list[float] = []

            async def wait_for_db() -> None:
                grant = await coord.acquire(Need("next", "gpu", 1, ("db",)), timeout_s=20)
                granted.append(time.monotonic())
                assert grant.fences["db"] > held["fences"]["db"]
                await coord.release(grant)

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait_for_db)
                await anyio.sleep(0.3)
                assert not granted  # the victim's lease is renewed while it lives
                victim.kill()
                killed_at = time.monotonic()
        finally:
            await victim.aclose()
        # Within one lease of the kill, plus a generous margin for a loaded machine.
        assert granted[0] - killed_at < LEASE_S + 1.0
        snap = await coord.snapshot()
        assert snap.holders == () and snap.class_usage["gpu"] == 0


async def test_dead_waiter_is_pruned_and_does_not_block_the_queue(
    redis_server: RedisServer, open_coordinator: OpenCoordinator, tmp_path: Path
) -> None:
    async with open_coordinator(lease_s=LEASE_S) as coord:
        hold = await coord.acquire(Need("hold", "io", None, ("db",)))
        config = {
            "url": redis_server.url,
            "namespace": coord._namespace,
            "lease_s": LEASE_S,
            "worker": "doomed",
            "mode": "wait",
            "steps": [
                {"stream": "s", "step": "doomed", "class": "io", "locks": ["db"], "priority": 0}
            ],
        }
        doomed = await Worker.start(tmp_path, config)
        try:
            assert (await doomed.next_event())["event"] == "waiting"
            doomed.kill()
        finally:
            await doomed.aclose()
        snap = await coord.snapshot()
        assert [w.holder for w in snap.waiters] == ["run-1/s/doomed"]  # first in line
        async with anyio.create_task_group() as tg:

            async def wait_low() -> None:
                grant = await coord.acquire(
                    Need("low", "io", None, ("db",), priority=3), timeout_s=LEASE_S * 4
                )
                await coord.release(grant)

            tg.start_soon(wait_low)
            await anyio.sleep(0.1)
            await coord.release(hold)
        snap = await coord.snapshot()
        assert snap.waiters == () and snap.holders == ()


async def test_redis_restart_mid_run(fresh_redis: RedisServer, tmp_path: Path) -> None:
    """Redis loses everything mid-run: no lock is ever held twice, fencing tokens keep
    increasing, holders learn of their loss, and every step still completes."""
    logs = [tmp_path / f"w{i}.jsonl" for i in range(3)]
    # Short steps contend for "db", "cache" and two "gpu" slots; one long step (a lock and
    # class of its own, so it starts at once) is sure to hold its lock across the restart.
    shape = [["db"], ["cache"], ["cache", "db"], ["db"]]
    steps = [
        [
            {"stream": f"w{i}", "step": f"s{j}", "class": "gpu", "cap": 2, "locks": locks,
             "hold_s": 0.1}
            for j, locks in enumerate(shape)
        ]
        for i in range(3)
    ]  # fmt: skip
    steps[0].append({"stream": "w0", "step": "long", "class": "batch", "cap": 1,
                     "locks": ["report"], "hold_s": 2.5, "retry_hold_s": 0.1})  # fmt: skip
    configs = [
        steps_config(fresh_redis, "restart", f"w{i}", logs[i], steps[i], RESTART_LEASE_S)
        for i in range(3)
    ]
    workers = [await Worker.start(tmp_path, config) for config in configs]
    try:
        for worker in workers:
            assert await worker.next_event() == {"event": "running"}
        fresh_redis.restart(down_s=0.2)
        restarted = datetime.now(UTC)
        for worker in workers:
            assert await worker.next_event(60) == {"event": "done"}
    finally:
        for worker in workers:
            await worker.aclose()
    runs = read_runs(logs)
    check_invariants(runs, {"gpu": 2, "batch": 1})
    lost = [r.key[2] for r in runs if r.lost and r.started < restarted]
    assert "long" in lost  # the holder learnt that the restart took its lock
    assert any(r.started > restarted for r in runs)  # and grants resumed after it
    done = {r.key[:3] for r in runs if not r.lost}
    expected = {(f"w{i}", f"w{i}", f"s{j}") for i in range(3) for j in range(4)}
    assert done == expected | {("w0", "w0", "long")}
    lost_lines = [
        line
        for i in range(3)
        for line in (tmp_path / f"w{i}.stderr").read_text().splitlines()
        if "lock_lost" in line
    ]
    assert lost_lines and all(fresh_redis.password not in line for line in lost_lines)
