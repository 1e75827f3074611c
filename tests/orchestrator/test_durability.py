"""Write-ahead step starts, a store that stops answering, and cancel of waiting steps.

The daemon's RunManager with a real SQLite store; where the store must misbehave it is
wrapped at our own RunStore Protocol boundary (``Outage``), never faked inside.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ConfigDict

from agents import ActionContext, ActionResult, builtin_registry
from agents.registry import ActionRegistry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.daemon.run_manager import RunManager
from orchestrator.settings import Settings
from orchestrator.store import RunStore, StoreUnavailable, open_store
from streams.model import Plan
from tests.daemon_process import DaemonProcess
from tests.helpers import plan_from, stream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Outage:
    """A real store whose event writes fail while ``down`` (as a dead server's would)."""

    def __init__(self, inner: RunStore) -> None:
        self.inner = inner
        self.down = False
        self.refused = 0
        self.retried = anyio.Event()  # set at the third refused write
        self.stored: dict[str, anyio.Event] = {}  # event name -> set once one is stored

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def when_stored(self, name: str) -> anyio.Event:
        return self.stored.setdefault(name, anyio.Event())

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        if self.down:
            self.refused += 1
            if self.refused >= 3:
                self.retried.set()
            raise StoreUnavailable("test-store", "connection refused", "start it again")
        written = await self.inner.append_events(run_id, events)
        for event in events:
            self.when_stored(str(event["event"])).set()
        return written


class ProbeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    block: bool = False


def probe_registry(store: RunStore, seen: dict[str, bool], gate: anyio.Event) -> ActionRegistry:
    """``probe``: records whether its own step_started was in the store when it ran."""
    registry = builtin_registry()

    async def probe(ctx: ActionContext, params: ProbeParams) -> ActionResult:
        stored = await store.read_events(ctx.run_id, after_seq=0, limit=10_000)
        seen[ctx.step] = any(
            e["event"] == "step_started" and e.get("step") == ctx.step for e in stored
        )
        if params.block:
            await gate.wait()
        return ActionResult(ok=True, summary="probed")

    registry.register("probe", ProbeParams)(probe)
    return registry


AGENTS = {"worker": {"class": "cpu", "can": ["probe"]}}


def probe_step(sid: str, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "agent": "worker", "action": "probe", **extra}


@asynccontextmanager
async def manager(
    tmp_path: Path, registry_for: Any, **settings: Any
) -> AsyncIterator[tuple[RunManager, Outage]]:
    config = Settings(state_dir=tmp_path / "state", **settings)
    async with open_store(None, state_dir=config.state_dir) as real:
        store = Outage(real)
        async with anyio.create_task_group() as tg:
            yield (
                RunManager(
                    settings=config,
                    store=store,  # a RunStore by delegation
                    coordinator=InProcessCoordinator(),
                    registry=registry_for(store),
                    task_group=tg,
                ),
                store,
            )
            tg.cancel_scope.cancel()


async def submit(runs: RunManager, plan: Plan) -> str:
    return await runs.submit(plan, "plan: test", "test.yaml", {})


async def steps_of(store: Outage, run_id: str) -> dict[str, tuple[str, str]]:
    return {s.step: (s.status, s.reason or "") for s in await store.inner.get_steps(run_id)}


async def test_an_action_starts_only_after_its_step_started_is_stored(tmp_path: Path) -> None:
    seen: dict[str, bool] = {}
    gate = anyio.Event()
    plan = plan_from(
        [stream(f"s{i}", [probe_step(f"p{i}a"), probe_step(f"p{i}b")]) for i in range(4)],
        agents=AGENTS,
        caps={"cpu": 4},
    )
    async with manager(tmp_path, lambda s: probe_registry(s, seen, gate)) as (runs, store):
        run_id = await submit(runs, plan)
        with anyio.fail_after(30):
            await runs.active[run_id].done.wait()
        record = await store.inner.get_run(run_id)
    assert record is not None and record.status == "succeeded"
    assert seen == {f"p{i}{x}": True for i in range(4) for x in "ab"}


async def test_a_dead_store_stops_steps_from_starting_then_fails_them_by_name(
    tmp_path: Path,
) -> None:
    seen: dict[str, bool] = {}
    plan = plan_from([stream("s", [probe_step("first")])], agents=AGENTS, caps={"cpu": 1})
    registry = lambda s: probe_registry(s, seen, anyio.Event())  # noqa: E731
    async with manager(tmp_path, registry, store_wait_s=0.5) as (runs, store):
        store.down = True
        run_id = await submit(runs, plan)
        active = runs.active[run_id]
        with anyio.fail_after(30):
            await store.retried.wait()  # the store has been retried while the step waited
            store.down = False  # back: what was kept is stored, the run records its end
            await active.done.wait()
        steps = await steps_of(store, run_id)
        record = await store.inner.get_run(run_id)
        events = [e["seq"] for e in await store.inner.read_events(run_id, after_seq=0)]
    assert seen == {}  # the action never ran
    status, reason = steps["first"]
    assert status == "failed" and "not started" in reason and "store_wait_s=0.5s" in reason
    assert record is not None and record.status == "failed"
    assert events == list(range(1, len(events) + 1))  # nothing lost, nothing doubled


async def test_a_store_back_within_the_wait_lets_the_run_continue(tmp_path: Path) -> None:
    seen: dict[str, bool] = {}
    plan = plan_from(
        [stream("s", [probe_step("one"), probe_step("two")])], agents=AGENTS, caps={"cpu": 1}
    )
    registry = lambda s: probe_registry(s, seen, anyio.Event())  # noqa: E731
    async with manager(tmp_path, registry, store_wait_s=60) as (runs, store):
        store.down = True
        run_id = await submit(runs, plan)
        with anyio.fail_after(30):
            await store.retried.wait()
            assert seen == {}
            store.down = False
            await runs.active[run_id].done.wait()
        record = await store.inner.get_run(run_id)
    assert record is not None and record.status == "succeeded"
    assert seen == {"one": True, "two": True}


async def test_cancel_ends_every_step_also_those_waiting_for_a_lock(tmp_path: Path) -> None:
    seen: dict[str, bool] = {}
    gate = anyio.Event()  # never set: "hold" runs until cancelled
    plan = plan_from(
        [
            stream("a", [probe_step("hold", locks=["db"], **{"with": {"block": True}})]),
            stream("b", [probe_step("wait", locks=["db"]), probe_step("after")]),
        ],
        agents=AGENTS,
        caps={"cpu": 2},
        resources=["db"],
    )
    async with manager(tmp_path, lambda s: probe_registry(s, seen, gate)) as (runs, store):
        run_id = await submit(runs, plan)
        with anyio.fail_after(30):
            await store.when_stored("step_waiting").wait()  # "wait" queues behind "hold"
            assert (await steps_of(store, run_id))["wait"][0] == "waiting"
            assert await runs.cancel(run_id) == "cancelled"
        steps = await steps_of(store, run_id)
        live = runs.active.get(run_id)
    assert live is None
    assert {k: v[0] for k, v in steps.items()} == {
        "hold": "cancelled",
        "wait": "cancelled",
        "after": "skipped",
    }
    assert steps["wait"][1] == "cancelled before it started"


async def test_fencing_tokens_continue_across_a_daemon_restart(tmp_path: Path) -> None:
    fences: list[int] = []
    registry = builtin_registry()

    async def fenced(ctx: ActionContext, params: ProbeParams) -> ActionResult:
        fences.append(ctx.fences["db"])
        return ActionResult(ok=True, summary="fenced")

    registry.register("probe", ProbeParams)(fenced)
    plan = plan_from(
        [stream("s", [probe_step("a", locks=["db"]), probe_step("b", locks=["db"])])],
        agents=AGENTS,
        caps={"cpu": 1},
        resources=["db"],
    )
    for _daemon in range(2):  # each with a new in-process coordinator, on the same store
        async with manager(tmp_path, lambda _: registry) as (runs, _store):
            await runs.resume_unfinished()  # what the daemon does at start
            run_id = await submit(runs, plan)
            with anyio.fail_after(30):
                await runs.active[run_id].done.wait()
    assert fences == [1, 2, 3, 4]  # the second daemon did not start again at 1


EVIDENCE_PLAN = """
version: 1
plan: evidence-resume
caps: {{cpu: 1}}
agents:
  worker: {{class: cpu, can: [command]}}
streams:
  - id: main
    team: [worker]
    evidence: [{{id: build-log, verified: true}}]
    steps:
      - id: build
        agent: worker
        action: command
        evidence: [build-log]
        with: {{argv: [sh, -c, "echo built"]}}
      - id: wait
        agent: worker
        action: command
        idempotent: true
        with: {{argv: [sh, -c, "echo wait >> {log}; while [ ! -f {go} ]; do sleep 0.05; done"]}}
"""


def test_a_drained_run_resumed_by_the_next_daemon_keeps_its_evidence(tmp_path: Path) -> None:
    log, go = tmp_path / "steps.log", tmp_path / "go"
    plan = tmp_path / "plan.yaml"
    plan.write_text(EVIDENCE_PLAN.format(log=log, go=go))
    first = DaemonProcess(tmp_path, ORCH_SHUTDOWN_GRACE_S="0.5").start()
    try:
        run_id = first.cli("submit", str(plan)).stdout.strip()
        assert run_id, first.log_text()[-2000:]
        deadline = time.monotonic() + 60
        while not (log.exists() and "wait" in log.read_text()):
            assert time.monotonic() < deadline, "the waiting step never started"
            time.sleep(0.05)
        assert first.stop(signal.SIGTERM) == 0  # drained: the run stays unfinished
    finally:
        first.close()
    go.touch()
    second = DaemonProcess(tmp_path).start()
    try:
        run = second.wait_for(run_id, {"succeeded", "failed"})
    finally:
        second.close()
    main = run["streams"][0]
    assert run["status"] == "succeeded", main.get("reason")
    assert "missing evidence" not in (main.get("reason") or "")
