"""Lock benchmark: RedisCoordinator against redis-py's ``redis.asyncio.lock.Lock``.

One run, one redis-server (started here with a password and no persistence, unless
``--url`` names one), the same machine for every client. Measured:

- uncontended acquire + release latency next to a bare PING pair (two round trips; an
  acquire and a release are one round trip each). Rounds of each kind are interleaved, so
  a machine that gets busier or quieter during the run affects all of them alike; with
  each, this process's CPU per pair and, for ours, Redis's time per script call
  (``INFO commandstats``), which move less with the load than the wall clock;
- hand-off latency: from the start of a release to the grant of a *different* waiter,
  with 8 tasks contending for one lock in one process, and with 3 processes of 8 tasks
  (timestamps from the shared wall clock);
- grants per second in both set-ups, and the share of grants that went to a different
  task than the one that released (a FIFO queue hands every grant over; redis-py's Lock
  lets the releasing task take the lock straight back while the others sleep).

redis-py's Lock polls while it waits (``sleep``, 0.1 s by default); it is measured with its
default and with ``sleep=0.001``, which polls Redis a thousand times a second per waiter.

Usage: ``python benchmarks/locks.py [--url URL] [--seconds S] [--rounds N]``; prints a table
and writes ``benchmarks/results/locks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio
from redis.asyncio.lock import Lock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from orchestrator.coordination import Need  # noqa: E402
from orchestrator.coordination.redis import RedisCoordinator  # noqa: E402

LEASE_S = 5.0
TASKS = 8
PROCESSES = 3


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_us(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median_us": float("nan"), "p99_us": float("nan"), "n": 0}
    return {
        "median_us": round(statistics.median(values) * 1e6, 1),
        "p99_us": round(pct(values, 0.99) * 1e6, 1),
        "n": len(values),
    }


# -- uncontended --------------------------------------------------------------------------


async def evalsha_usec(client: redis.asyncio.Redis) -> tuple[int, float]:
    """Calls of EVALSHA and the microseconds Redis spent in them so far."""
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0.0))


async def uncontended(
    client: redis.asyncio.Redis, coord: RedisCoordinator, rounds: int, per_round: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall-clock samples per operation, and per operation the CPU seconds of this process
    per call and (``ours_in_redis``) Redis's microseconds per script call of ours: both
    move less with the machine's load than wall-clock time does."""
    need = Need("bench/uncontended", "bench", None, ("lock-u",))
    lock = Lock(client, "bench-redispy-u", timeout=10)

    async def ping_pair() -> None:
        await client.ping()
        await client.ping()

    async def ours() -> None:
        await coord.release(await coord.acquire(need))

    async def redispy() -> None:
        await lock.acquire()
        await lock.release()

    ops: dict[str, Callable[[], Awaitable[None]]] = {
        "ping_pair": ping_pair,
        "ours_uncontended": ours,
        "redispy_uncontended": redispy,
    }
    samples: dict[str, list[float]] = {name: [] for name in ops}
    cpu = dict.fromkeys(ops, 0.0)
    script_calls, script_usec = 0, 0.0
    for op in ops.values():  # warm-up: connections, scripts, caches
        for _ in range(200):
            await op()
    for _ in range(rounds):
        for name, op in ops.items():
            calls_before, usec_before = await evalsha_usec(client)
            cpu_before = time.process_time()
            for _ in range(per_round):
                start = time.perf_counter()
                await op()
                samples[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - cpu_before
            if name == "ours_uncontended":
                calls_after, usec_after = await evalsha_usec(client)
                script_calls += calls_after - calls_before
                script_usec += usec_after - usec_before
    costs = {f"{name}_cpu_us": round(cpu[name] / (rounds * per_round) * 1e6, 1) for name in ops}
    costs["ours_in_redis_us_per_call"] = round(script_usec / max(1, script_calls), 1)
    return samples, costs


# -- contended ----------------------------------------------------------------------------


class Contention:
    """Tasks that acquire, hold nothing, release and go again until ``end`` (wall clock).

    Records (time, task, "grant" | "release") with the wall clock, so the records of
    several processes can be merged.
    """

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    async def run(
        self, worker: Callable[[str, float], Coroutine[Any, Any, None]], end: float
    ) -> None:
        async with anyio.create_task_group() as tg:
            for i in range(TASKS):
                tg.start_soon(worker, f"{os.getpid()}/{i}", end)


def analyse(events: list[tuple[float, str, str]], seconds: float) -> dict[str, Any]:
    """Hand-offs (release start to a different task's grant), grants/s, hand-over share."""
    events.sort()
    handoffs: list[float] = []
    grants = other = 0
    last_release: tuple[float, str] | None = None
    for at, task, kind in events:
        if kind == "release":
            last_release = (at, task)
            continue
        grants += 1
        if last_release is not None and last_release[1] != task:
            other += 1
            handoffs.append(at - last_release[0])
        last_release = None
    return {
        **summary_us(handoffs),
        "grants_per_s": round(grants / seconds),
        "handed_over_share": round(other / grants, 3) if grants else 0.0,
    }


async def ours_contended(coord: RedisCoordinator, end: float) -> Contention:
    stats = Contention()

    async def worker(task: str, end: float) -> None:
        n = 0
        while time.time() < end:
            n += 1
            grant = await coord.acquire(Need(f"bench/{task}/{n}", "bench", None, ("lock-c",)))
            stats.events.append((time.time(), task, "grant"))
            stats.events.append((time.time(), task, "release"))
            await coord.release(grant)

    await stats.run(worker, end)
    return stats


async def redispy_contended(client: redis.asyncio.Redis, end: float, sleep_s: float) -> Contention:
    stats = Contention()

    async def worker(task: str, end: float) -> None:
        lock = Lock(client, "bench-redispy-c", timeout=10, sleep=sleep_s)
        while time.time() < end:
            await lock.acquire()
            stats.events.append((time.time(), task, "grant"))
            stats.events.append((time.time(), task, "release"))
            await lock.release()

    await stats.run(worker, end)
    return stats


async def child(config: dict[str, Any]) -> None:
    """One of the processes: contend from ``start_at`` for ``seconds``, print the events."""
    client = redis.asyncio.Redis.from_url(config["url"])
    start_at, end = config["start_at"], config["start_at"] + config["seconds"]
    if config["kind"] == "ours":
        async with RedisCoordinator(
            config["url"], namespace=config["namespace"], lease_s=LEASE_S
        ) as coord:
            await anyio.sleep(max(0.0, start_at - time.time()))
            stats = await ours_contended(coord, end)
    else:
        await anyio.sleep(max(0.0, start_at - time.time()))
        stats = await redispy_contended(client, end, config["sleep_s"])
    await client.aclose()
    print(json.dumps(stats.events), flush=True)


def processes(url: str, kind: str, namespace: str, seconds: float, sleep_s: float) -> Any:
    config = {
        "url": url,
        "kind": kind,
        "namespace": namespace,
        "seconds": seconds,
        "sleep_s": sleep_s,
        "start_at": time.time() + 2.0,
    }  # after all connected
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(config)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    events: list[tuple[float, str, str]] = []
    for proc in children:
        out, _ = proc.communicate(timeout=seconds + 60)
        events += [(at, task, kind) for at, task, kind in json.loads(out.strip().splitlines()[-1])]
    return analyse(events, seconds)


# -- the run ------------------------------------------------------------------------------


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    password = secrets.token_urlsafe(12)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(workdir / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.01)
    client.close()
    return proc, url


async def bench(url: str, seconds: float, rounds: int) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    namespace = "bench-" + secrets.token_hex(3)
    results: dict[str, Any] = {}
    info = await client.info("server")
    # Right after Redis starts, the coordinator grants nothing for one lease (see redis.py).
    await anyio.sleep(max(0.0, LEASE_S + 1 - float(info["uptime_in_seconds"])))
    async with RedisCoordinator(url, namespace=namespace, lease_s=LEASE_S) as coord:
        samples, costs = await uncontended(client, coord, rounds, 300)
        results.update({name: summary_us(values) for name, values in samples.items()})
        results["uncontended_costs"] = costs
        ours = await ours_contended(coord, time.time() + seconds)
        results["ours_1_process"] = analyse(ours.events, seconds)
    for sleep_s in (0.1, 0.001):
        contended = await redispy_contended(client, time.time() + seconds, sleep_s)
        results[f"redispy_1_process_sleep_{sleep_s}"] = analyse(contended.events, seconds)
    await client.aclose()
    results["ours_3_processes"] = await anyio.to_thread.run_sync(
        processes, url, "ours", namespace, seconds, 0.0
    )
    for sleep_s in (0.1, 0.001):
        results[f"redispy_3_processes_sleep_{sleep_s}"] = await anyio.to_thread.run_sync(
            processes, url, "redispy", namespace, seconds, sleep_s
        )
    return results


def table(r: dict[str, Any]) -> str:
    ping = r["ping_pair"]["median_us"]
    costs = r["uncontended_costs"]
    lines = [f"{'uncontended, us':<46}{'median':>9}{'p99':>9}{'x PING pair':>13}{'CPU':>9}"]
    for name, key in [
        ("bare PING pair (2 round trips)", "ping_pair"),
        ("ours: acquire + release", "ours_uncontended"),
        ("redis-py Lock: acquire + release", "redispy_uncontended"),
    ]:
        row = r[key]
        lines.append(
            f"{name:<46}{row['median_us']:>9.1f}{row['p99_us']:>9.1f}"
            f"{row['median_us'] / ping:>13.2f}{costs[key + '_cpu_us']:>9.1f}"
        )
    lines.append(f"ours: inside Redis per script call {costs['ours_in_redis_us_per_call']:.1f} us")
    header = f"{'hand-off median':>16}{'p99':>10}{'grants/s':>10}{'handed over':>13}"
    for title, suffix in [
        ("8 tasks, 1 process", "1_process"),
        ("3 processes x 8 tasks", "3_processes"),
    ]:
        lines += ["", f"{title:<46}{header}"]
        for name, key in [
            ("ours", f"ours_{suffix}"),
            ("redis-py Lock, sleep=0.1 (default)", f"redispy_{suffix}_sleep_0.1"),
            ("redis-py Lock, sleep=0.001", f"redispy_{suffix}_sleep_0.001"),
        ]:
            row = r[key]
            lines.append(
                f"{name:<46}{row['median_us'] / 1000:>13.3f} ms{row['p99_us'] / 1000:>7.2f} ms"
                f"{row['grants_per_s']:>10}{row['handed_over_share']:>13.0%}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an existing Redis (default: start one here)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per contended run")
    parser.add_argument("--rounds", type=int, default=10, help="of 300 samples, per client")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, json.loads(args.child))
        return
    server = None
    with tempfile.TemporaryDirectory() as workdir:
        if args.url:
            url = args.url
        else:
            server, url = start_server(Path(workdir))
        try:
            results = anyio.run(bench, url, args.seconds, args.rounds)
        finally:
            if server is not None:
                server.kill()
                server.wait()
    results["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "redis_py": redis.__version__,
        "platform": platform.platform(),
    }
    print(table(results))
    out = ROOT / "benchmarks" / "results" / "locks.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
