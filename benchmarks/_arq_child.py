"""The arq side of ``benchmarks/peers.py``; runs in ``.bench-venv`` (arq only, no project code).

One arq queue and worker per class, ``max_jobs`` = the class's cap (10,000 for unlimited),
``burst`` so that a worker ends when its queue is empty, polling every 5 ms (arq's default
is 0.5 s). The time runs from the first enqueue to the last worker's end. Reads a JSON
object (url, tasks [[class, seconds], ...], caps) from stdin; prints a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

UNLIMITED_JOBS = 10_000


async def sleep_job(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)


async def main(config: dict[str, Any]) -> dict[str, float]:
    settings = RedisSettings.from_dsn(config["url"])
    pool = await create_pool(settings)
    prefix = f"arq-bench-{time.monotonic_ns()}:"
    workers = [
        Worker(
            functions=[func(sleep_job, name="sleep")],  # type: ignore[arg-type]
            redis_pool=pool,
            queue_name=prefix + cls,
            max_jobs=cap or UNLIMITED_JOBS,
            burst=True,
            poll_delay=0.005,
            handle_signals=False,
            keep_result=0,
        )
        for cls, cap in config["caps"].items()
    ]
    started, cpu = time.perf_counter(), time.process_time()
    for cls, seconds in config["tasks"]:
        await pool.enqueue_job("sleep", seconds, _queue_name=prefix + cls)
    enqueued = time.perf_counter()
    await asyncio.gather(*(w.main() for w in workers))
    finished = time.perf_counter()
    done = sum(w.jobs_complete for w in workers)
    for worker in workers:
        await worker.close()
    await pool.aclose()
    return {
        "run_s": finished - started,
        "enqueue_s": enqueued - started,
        "cpu_s": time.process_time() - cpu,
        "jobs_complete": done,
    }


if __name__ == "__main__":
    # The configuration comes on stdin: 10,000 tasks are too long for an argument list.
    print(json.dumps(asyncio.run(main(json.loads(sys.stdin.read())))))
