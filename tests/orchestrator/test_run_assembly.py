"""One way to put a run together (runs.assemble_run), for `orchestrator run` and the daemon,
and the optional event-stream capability that decides whether a run's events are relayed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.event_relay import EventStream, relay_for
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
