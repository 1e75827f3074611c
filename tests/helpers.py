"""Helpers shared by tests: building plans and running them on a virtual clock."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import trio.testing

from agents import builtin_registry
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunResult, Scheduler, SchedulerConfig
from streams.model import Plan

T = TypeVar("T")

AGENTS = {
    "cpu-agent": {"class": "cpu", "can": ["sleep", "command"]},
    "io-agent": {"class": "io", "can": ["sleep", "command"]},
    "net-agent": {"class": "network", "can": ["sleep", "command"]},
    "light-agent": {"class": "light", "can": ["sleep", "command"]},
}
CAPS = {"cpu": 2, "io": 3, "network": 2, "light": None}


def plan_from(streams: list[dict[str, Any]], **extra: Any) -> Plan:
    """A valid plan with the standard agents and caps around ``streams``."""
    data: dict[str, Any] = {
        "version": 1,
        "plan": "test",
        "caps": extra.pop("caps", CAPS),
        "resources": extra.pop("resources", ["redis", "database", "api-gateway"]),
        "agents": extra.pop("agents", AGENTS),
        "streams": streams,
    }
    data.update(extra)
    return Plan.model_validate(data)


def stream(sid: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    team = sorted({s["agent"] for s in steps} | set(extra.pop("team", [])))
    return {"id": sid, "team": team, "steps": steps, **extra}


def sleep_step(
    sid: str, agent: str = "light-agent", seconds: float = 0.0, **extra: Any
) -> dict[str, Any]:
    return {"id": sid, "agent": agent, "action": "sleep", "with": {"seconds": seconds}, **extra}


async def run_plan(
    plan: Plan,
    *,
    coordinator: Coordinator | None = None,
    workdir: Path | None = None,
    seed: int = 1,
) -> tuple[RunResult, list[dict[str, Any]]]:
    """Run ``plan`` to the end; return the result and its events."""
    sink = MemorySink()
    scheduler = Scheduler(
        plan,
        run_id="run-test",
        coordinator=coordinator or InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("run-test", [sink]),
        config=SchedulerConfig(
            workdir=workdir or Path.cwd(),
            seed=seed,
            env={"PATH": "/usr/bin:/bin"},
            kill_grace_s=1.0,
        ),
    )
    result = await scheduler.run()
    return result, sink.events


def on_virtual_clock(func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run ``func`` on trio with an auto-jumping mock clock: sleeps take no real time."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(func, *args, backend="trio", backend_options={"clock": clock})


def events_named(events: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e for e in events if e["event"] == name and all(e.get(k) == v for k, v in match.items())
    ]


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """``mount`` as a tmpfs of ``size`` (say "1m") while the block runs; the test is
    skipped, saying why, where mounting is refused (it needs root), and fails under CI."""
    mount.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = f"cannot mount a {size} tmpfs (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):  # CI runs as root: a refusal there is a failure, not a skip
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@contextlib.contextmanager
def serving_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """A threaded HTTP server of ``handler`` on a free loopback port while the block runs;
    yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
