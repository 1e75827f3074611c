"""A worker process for the multi-process Redis coordination tests.

Run as ``python -m tests.orchestrator.coordination.redis_worker CONFIG_JSON`` from the
repository root. CONFIG is a JSON object with ``url``, ``namespace``, ``lease_s``,
``worker`` (a name) and ``mode``:

- ``steps``: run every step of ``steps`` (each ``{"stream", "step", "class", "cap",
  "locks", "hold_s", "priority", "retry_hold_s"}``) concurrently, each as acquire, work for
  ``hold_s`` (stopping at once if the lease is lost), release; a step whose lease was lost
  runs again (working ``retry_hold_s`` then, if given).
  Each start and end is a JSON line appended to ``log``; ``running`` is printed when the
  first step starts, ``done`` at the end.
- ``hold``: acquire the one step in ``steps``, print ``{"event": "granted", "fences": ...}``
  and hold it until killed.
- ``wait``: print ``{"event": "waiting"}`` once queued, then, once granted, print
  ``{"event": "granted", ...}`` and hold it until killed.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import anyio

from foundation.errors import CoordinatorUnavailable
from orchestrator.coordination import Blocker, Grant, Need
from orchestrator.coordination.redis import RedisCoordinator
from orchestrator.logging import configure_logging


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def need_of(config: dict[str, Any], step: dict[str, Any], attempt: int) -> Need:
    run_id = config.get("run_id", "run-1")
    return Need(
        holder=f"{run_id}/{step['stream']}/{step['step']}",
        resource_class=step["class"],
        cap=step.get("cap"),
        locks=tuple(step.get("locks", ())),
        priority=step.get("priority", 2),
        labels={
            "run_id": run_id,
            "stream": step["stream"],
            "step": step["step"],
            "worker": config["worker"],
            "attempt": str(attempt),
        },
    )


def write(out: TextIO, record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


async def run_step(
    coord: RedisCoordinator, config: dict[str, Any], step: dict[str, Any], log: TextIO
) -> None:
    for attempt in range(1, 50):
        need = need_of(config, step, attempt)
        try:
            grant = await coord.acquire(need, timeout_s=60)
        except CoordinatorUnavailable:
            await anyio.sleep(0.2)  # Redis is away for longer than the grace: try again
            continue
        base = {
            "run_id": need.labels["run_id"],
            "stream": step["stream"],
            "step": step["step"],
            "resource_class": need.resource_class,
            "locks": list(need.locks),
            "fences": dict(grant.fences),
            "worker": config["worker"],
            "attempt": attempt,
        }
        write(log, {"ts": now_iso(), "event": "step_started", **base})
        if not config.setdefault("told", False):
            config["told"] = True
            write(sys.stdout, {"event": "running"})
        hold_s = step["hold_s"] if attempt == 1 else step.get("retry_hold_s", step["hold_s"])
        with anyio.move_on_after(hold_s):
            await grant.lost.wait()
        # Logged before the release, and at once when the lease is lost.
        write(log, {"ts": now_iso(), "event": "step_finished", "lost": grant.lost.is_set(), **base})
        await coord.release(grant)
        if not grant.lost.is_set():
            return
    raise RuntimeError(f"step {step} lost its lease 50 times")


async def main(config: dict[str, Any]) -> None:
    configure_logging(fmt="json")  # diagnostics to stderr; stdout carries the events
    async with RedisCoordinator(
        config["url"],
        namespace=config["namespace"],
        lease_s=config["lease_s"],
        outage_grace_s=config.get("outage_grace_s"),
    ) as coord:
        mode = config["mode"]
        if mode == "steps":
            # Opened once, before any step runs; each line is written and flushed whole.
            with Path(config["log"]).open("a") as log:  # noqa: ASYNC230
                async with anyio.create_task_group() as tg:
                    for step in config["steps"]:
                        tg.start_soon(run_step, coord, config, step, log)
            write(sys.stdout, {"event": "done"})
            return
        step = config["steps"][0]

        def blocked(blockers: tuple[Blocker, ...]) -> None:
            write(sys.stdout, {"event": "waiting", "blockers": [b.resource for b in blockers]})

        grant: Grant = await coord.acquire(need_of(config, step, 1), on_blocked=blocked)
        write(sys.stdout, {"event": "granted", "fences": dict(grant.fences), "ts": now_iso()})
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
