"""The tool gate: scope, per-call locks over a real coordinator, the stale-write guard,
evidence, undo and the tool_called event."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.actions import builtin_registry
from agents.base import ActionContext
from agents.tools import ToolGate, ToolSession
from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.coordination.base import Need
from orchestrator.events import EventLog, MemorySink
from orchestrator.tool_locks import CoordinatorToolLocks
from tests.servers import RedisServer, open_redis_coordinator

FILE_TOOLS = frozenset({"file.read", "file.write", "file.edit"})


@pytest.fixture(params=["memory", "redis"])
async def coordinator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Coordinator]:
    if request.param == "memory":
        yield InProcessCoordinator()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    async with open_redis_coordinator(server) as redis:
        yield redis


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


MakeGate = Callable[..., ToolGate]


@pytest.fixture
def make_gate(coordinator: Coordinator, sink: MemorySink) -> MakeGate:
    def make(**options: Any) -> ToolGate:
        return ToolGate(
            builtin_registry(),
            CoordinatorToolLocks(coordinator),
            EventLog("run-1", [sink]),
            **options,
        )

    return make


def session(
    workdir: Path, agent: str = "config-writer", can: frozenset[str] = FILE_TOOLS
) -> ToolSession:
    ctx = ActionContext(
        run_id="run-1",
        stream="redis-auth",
        step="step-1",
        agent=agent,
        attempt=1,
        fences={},
        env={},
        workdir=workdir,
    )
    return ToolSession(ctx, can)


class ReadBarrier:
    """Holds every agent after its first read until all have read (the worst interleaving:
    everyone read the same value before anyone writes)."""

    def __init__(self, parties: int) -> None:
        self.waiting = parties
        self.all_read = anyio.Event()

    async def wait(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_read.set()
        await self.all_read.wait()


async def increment(gate: ToolGate, agent: ToolSession, barrier: ReadBarrier) -> int:
    """Read-increment-write the counter until the write is not stale; return the tries."""
    for tries in range(1, 100):
        read = await gate.call(agent, "file.read", {"path": "counter.txt"})
        assert read.status == "ok", read.message
        assert read.result is not None
        value = int(read.result.output)
        if tries == 1:
            await barrier.wait()
        write = await gate.call(
            agent, "file.write", {"path": "counter.txt", "content": f"{value + 1}\n"}
        )
        if write.status == "ok":
            return tries
        assert write.status == "stale", write.message
    raise AssertionError("never got a write in")


async def run_counter(gate: ToolGate, workdir: Path, agents: int = 8) -> list[int]:
    (workdir / "counter.txt").write_text("0\n")
    barrier = ReadBarrier(agents)
    tries: list[int] = []

    async def one(agent: ToolSession) -> None:
        tries.append(await increment(gate, agent, barrier))

    async with anyio.create_task_group() as group:
        for i in range(agents):
            group.start_soon(one, session(workdir, f"agent-{i}"))
    return tries


async def test_eight_agents_incrementing_one_counter_lose_no_update(
    make_gate: MakeGate, tmp_path: Path, sink: MemorySink
) -> None:
    tries = await run_counter(make_gate(), tmp_path)
    assert (tmp_path / "counter.txt").read_text() == "8\n"
    assert sorted(tries)[-1] > 1  # the guard did turn writes away: they retried
    statuses = {e["status"] for e in sink.events if e["event"] == "tool_called"}
    assert statuses == {"ok", "stale"}
    writes = [e for e in sink.events if e["event"] == "tool_called" and e["tool"] == "file.write"]
    assert all("file:counter.txt" in e["fences"] for e in writes)
    fences = [e["fences"]["file:counter.txt"] for e in writes]
    assert fences == sorted(fences)  # strictly increasing in event order
    assert len(set(fences)) == len(fences)


async def test_without_the_guard_the_same_run_loses_updates(
    make_gate: MakeGate, tmp_path: Path
) -> None:
    tries = await run_counter(make_gate(stale_guard=False), tmp_path)
    assert tries == [1] * 8
    # Every agent read 0 before any wrote: the last write wins, seven updates are lost.
    assert (tmp_path / "counter.txt").read_text() == "1\n"


async def test_a_tool_outside_the_scope_never_runs_and_is_recorded(
    make_gate: MakeGate, tmp_path: Path, sink: MemorySink
) -> None:
    agent = session(tmp_path, can=frozenset({"file.read"}))
    outcome = await make_gate().call(agent, "file.write", {"path": "x.txt", "content": "x"})
    assert outcome.status == "refused"
    assert "outside the scope of agent 'config-writer'" in outcome.message
    assert "file.read" in outcome.message
    assert not (tmp_path / "x.txt").exists()
    (event,) = sink.events
    assert event["event"] == "tool_called"
    assert (event["stream"], event["step"], event["agent"]) == (
        "redis-auth",
        "step-1",
        "config-writer",
    )
    assert (event["tool"], event["status"]) == ("file.write", "refused")


async def test_path_escapes_are_refused(make_gate: MakeGate, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside.txt").write_text("outside\n")
    (work / "link").symlink_to(tmp_path / "outside.txt")
    gate, agent = make_gate(), session(work)
    for path in ("../outside.txt", str(tmp_path / "outside.txt"), "link"):
        outcome = await gate.call(agent, "file.read", {"path": path})
        assert outcome.status == "refused", (path, outcome.message)
        assert "outside\n" not in outcome.message
    write = await gate.call(agent, "file.write", {"path": "link", "content": "pwned"})
    assert write.status in ("refused", "stale")
    assert (tmp_path / "outside.txt").read_text() == "outside\n"


async def test_a_busy_resource_answers_busy_instead_of_waiting_forever(
    make_gate: MakeGate, coordinator: Coordinator, tmp_path: Path
) -> None:
    (tmp_path / "compose.yml").write_text("services: {}\n")
    holder = f"other-{secrets.token_hex(3)}"
    grant = await coordinator.acquire(
        Need(holder=holder, resource_class="tool-call", cap=None, locks=("file:compose.yml",))
    )
    try:
        outcome = await make_gate(lock_wait_s=0.2).call(
            session(tmp_path), "file.read", {"path": "compose.yml"}
        )
        assert outcome.status == "busy"
        assert outcome.message.startswith("busy, try again")
    finally:
        await coordinator.release(grant)
    again = await make_gate(lock_wait_s=0.2).call(
        session(tmp_path), "file.read", {"path": "compose.yml"}
    )
    assert again.status == "ok"
    snapshot = await coordinator.snapshot()
    assert not snapshot.holders and not snapshot.waiters  # nothing left held or queued


async def test_a_write_needs_a_fresh_read_whatever_the_model_claims(
    make_gate: MakeGate, tmp_path: Path
) -> None:
    target = tmp_path / "redis.conf"
    target.write_text("port 6379\n")
    gate, agent = make_gate(), session(tmp_path)
    blind = await gate.call(
        agent,
        "file.edit",
        {
            "path": "redis.conf",
            "old_string": "6379",
            "new_string": "6380",
            "expected_version": "unread-no",
        },
    )
    assert blind.status == "stale" and "never read" in blind.message
    read = await gate.call(agent, "file.read", {"path": "redis.conf"})
    assert read.result is not None
    target.write_text("port 7000\n")  # another writer, outside this session
    lied = await gate.call(
        agent,
        "file.write",
        {"path": "redis.conf", "content": "x", "expected_version": "a" * 64},
    )
    assert lied.status == "stale" and "changed since you read it" in lied.message
    await gate.call(agent, "file.read", {"path": "redis.conf"})
    edit = await gate.call(
        agent, "file.edit", {"path": "redis.conf", "old_string": "7000", "new_string": "7001"}
    )
    assert edit.status == "ok"
    # Its own write taught the ledger the new version: a second edit needs no re-read.
    second = await gate.call(
        agent, "file.edit", {"path": "redis.conf", "old_string": "7001", "new_string": "7002"}
    )
    assert second.status == "ok" and target.read_text() == "port 7002\n"


async def test_rollback_through_the_undo_records_restores_every_file(
    make_gate: MakeGate, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a0\n")
    gate, agent = make_gate(), session(tmp_path)
    await gate.call(agent, "file.read", {"path": "a.txt"})
    for n in (1, 2):
        outcome = await gate.call(
            agent, "file.edit", {"path": "a.txt", "old_string": f"a{n - 1}", "new_string": f"a{n}"}
        )
        assert outcome.status == "ok"
    created = await gate.call(agent, "file.write", {"path": "sub/b.txt", "content": "b\n"})
    assert created.status == "ok"
    assert len(agent.undo) == 3 and len(agent.evidence) == 4
    assert [e.detail.get("sha256_after") for e in agent.evidence[1:]][-1] is not None
    registry = builtin_registry()
    for record in reversed(agent.undo):
        action = registry[record.action]
        result = await action.run(agent.context, action.params.model_validate(dict(record.params)))
        assert result.ok, result.summary
    assert (tmp_path / "a.txt").read_text() == "a0\n"
    assert not (tmp_path / "sub/b.txt").exists()


async def test_arguments_are_masked_and_bounded_in_the_event(
    make_gate: MakeGate, tmp_path: Path, sink: MemorySink
) -> None:
    agent = session(tmp_path, can=frozenset({"file.write", "command"}))
    long = "line\n" * 200
    await make_gate().call(agent, "file.write", {"path": "notes.md", "content": long})
    await make_gate().call(agent, "command", {"argv": ["true", "--pass", "hunter2-secret"]})
    write, command = (e for e in sink.events if e["event"] == "tool_called")
    assert write["status"] == "ok"
    assert len(write["arguments"]["content"]) < 300
    assert "hunter2-secret" not in repr(command)
    assert command["arguments"]["argv"][2] == "***"
    assert isinstance(command["duration_s"], float)


async def test_invalid_arguments_are_an_error_for_the_model_without_their_values(
    make_gate: MakeGate, tmp_path: Path
) -> None:
    outcome = await make_gate().call(
        session(tmp_path), "file.write", {"path": "a", "contents": "password=hunter2"}
    )
    assert outcome.status == "error"
    assert "content" in outcome.message and "hunter2" not in outcome.message
