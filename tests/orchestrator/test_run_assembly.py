"""One way to put a run together (runs.assemble_run), for `orchestrator run` and the daemon,
and the optional event-stream capability that decides whether a run's events are relayed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from agents import builtin_registry
from foundation.errors import CoordinatorUnavailable
from orchestrator.coordination import InProcessCoordinator
from orchestrator.event_relay import EventBatchStream, EventRelay, EventStream, relay_for
from orchestrator.events import MemorySink
from orchestrator.runs import assemble_run, execute_plan
from orchestrator.settings import Settings
from tests.helpers import plan_from, sleep_step, stream

PASSWORD = "pw-assembly-93b1c2"


class StreamingCoordinator(InProcessCoordinator):
    """The in-process coordinator plus a shared event stream, as Redis has one."""

    def __init__(self) -> None:
        super().__init__()
        self.appended: list[tuple[str, dict[str, Any]]] = []

    async def append_event(self, run_id: str, event: Mapping[str, Any]) -> str:
        self.appended.append((run_id, dict(event)))
        return str(len(self.appended))


def test_only_a_backend_with_an_event_stream_gets_a_relay() -> None:
    assert relay_for(InProcessCoordinator(), "run-1") is None
    streaming = StreamingCoordinator()
    assert isinstance(streaming, EventStream)
    assert relay_for(streaming, "run-1") is not None


async def test_a_run_is_assembled_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        redis_url=SecretStr(f"redis://:{PASSWORD}@127.0.0.1:1/0"),
        kill_grace_s=2.5,
    )
    plan = plan_from(
        [
            stream(
                "s",
                [
                    {
                        "id": "say",
                        "agent": "light-agent",
                        "action": "command",
                        "with": {"argv": ["echo", PASSWORD]},
                    }
                ],
            )
        ]
    )
    sink = MemorySink()
    run = assemble_run(
        plan,
        run_id="run-a",
        settings=settings,
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        sinks=[sink],
        workdir=tmp_path,
        first_seq=5,
    )
    assert run.relay is None
    assert run.scheduler.config.kill_grace_s == 2.5 and run.scheduler.config.workdir == tmp_path
    with anyio.fail_after(30):
        result = await run.scheduler.run()
    assert result.status.value == "succeeded"
    assert [e["seq"] for e in sink.events] == list(range(5, 5 + len(sink.events)))
    text = json.dumps(sink.events)
    assert "echo" in text and PASSWORD not in text  # the settings' secrets are masked


async def test_orchestrator_run_relays_every_event_in_order(tmp_path: Path) -> None:
    coordinator = StreamingCoordinator()
    sink = MemorySink()
    plan = plan_from([stream("s", [sleep_step("a"), sleep_step("b", needs=["a"])])])
    with anyio.fail_after(30):
        result = await execute_plan(
            plan,
            run_id="run-r",
            settings=Settings(state_dir=tmp_path),
            coordinator=coordinator,
            registry=builtin_registry(),
            sinks=[sink],
            workdir=tmp_path,
        )
    assert result.status.value == "succeeded"
    assert {run_id for run_id, _ in coordinator.appended} == {"run-r"}
    assert [e for _, e in coordinator.appended] == sink.events


class BatchStreamingCoordinator(StreamingCoordinator):
    """The same with batch appends, as Redis has them; the first batch is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        self.batches.append(len(events))
        if len(self.batches) == 1:
            raise CoordinatorUnavailable("redis", "refused", "nothing")
        self.appended.extend((run_id, dict(e)) for e in events)


async def test_a_relay_writes_pending_events_in_batches_in_order() -> None:
    coordinator = BatchStreamingCoordinator()
    assert isinstance(coordinator, EventBatchStream)
    relay = relay_for(coordinator, "run-b")
    assert relay is not None
    relay.BATCH_MAX_EVENTS = 4
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.run)
            for seq in range(1, 3):
                relay.emit({"seq": seq, "run_id": "run-b"})
            await anyio.wait_all_tasks_blocked()  # the first batch was written (and refused)
            for seq in range(3, 13):
                relay.emit({"seq": seq, "run_id": "run-b"})
            relay.close()
    assert coordinator.batches == [2, 4, 4, 2]
    assert relay.dropped == 2  # logged and skipped: the store and event file keep them
    assert [e["seq"] for _, e in coordinator.appended] == list(range(3, 13))
    assert {run_id for run_id, _ in coordinator.appended} == {"run-b"}


def test_a_relay_takes_exactly_one_writer() -> None:
    async def write(event: Mapping[str, Any]) -> None:
        return None

    async def write_all(events: Sequence[Mapping[str, Any]]) -> None:
        return None

    with pytest.raises(TypeError, match="one of writer and batch_writer"):
        EventRelay()
    with pytest.raises(TypeError, match="one of writer and batch_writer"):
        EventRelay(write, batch_writer=write_all)
