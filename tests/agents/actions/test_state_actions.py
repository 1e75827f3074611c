"""state.put / state.get / state.wait: parallel streams synchronising through shared state."""

from __future__ import annotations

import secrets
from typing import Any

import anyio

from orchestrator.coordination import Coordinator, InProcessCoordinator
from orchestrator.coordination.redis import RedisCoordinator
from orchestrator.scheduler import RunStatus
from tests.helpers import events_named, on_virtual_clock, plan_from, run_plan, sleep_step
from tests.servers import RedisServer

AGENTS = {"a": {"class": "light", "can": ["sleep", "state.put", "state.get", "state.wait"]}}


def handshake_plan(seconds: float) -> Any:
    return plan_from(
        [
            {
                "id": "producer",
                "team": ["a"],
                "steps": [
                    sleep_step("migrate", "a", seconds),
                    {
                        "id": "announce",
                        "agent": "a",
                        "action": "state.put",
                        "with": {"key": "schema", "value": "v2"},
                    },
                ],
            },
            {
                "id": "consumer",
                "team": ["a"],
                "steps": [
                    {
                        "id": "await-schema",
                        "agent": "a",
                        "action": "state.wait",
                        "with": {"key": "schema", "equals": "v2", "timeout": "1m"},
                    },
                    {
                        "id": "check",
                        "agent": "a",
                        "action": "state.get",
                        "with": {"key": "schema", "expect": "v2"},
                    },
                ],
            },
        ],
        agents=AGENTS,
        caps={"light": None},
    )


def _check_handshake(result: Any, events: list[dict[str, Any]]) -> None:
    assert result.status is RunStatus.SUCCEEDED
    # The put happens inside "announce"; the waiter may be woken (through Redis) before the
    # producer's own step_finished is emitted, but never before "announce" started.
    (announcing,) = events_named(events, "step_started", step="announce")
    (awaited,) = events_named(events, "step_finished", step="await-schema")
    assert awaited["seq"] > announcing["seq"]  # the consumer went on only after the put
    assert events_named(events, "evidence_collected", step="check")[0]["source"] == "state"


def test_streams_synchronise_in_process() -> None:
    result, events = on_virtual_clock(run_plan, handshake_plan(5))
    _check_handshake(result, events)


def test_streams_synchronise_through_redis(redis_server: RedisServer) -> None:
    async def go() -> Any:
        async with RedisCoordinator(
            redis_server.url, namespace=f"t{secrets.token_hex(4)}"
        ) as coordinator:
            return await run_plan(handshake_plan(0.3), coordinator=coordinator)

    result, events = anyio.run(go)
    _check_handshake(result, events)


def test_compare_and_set_refuses_a_stale_version() -> None:
    plan = plan_from(
        [
            {
                "id": "s",
                "team": ["a"],
                "steps": [
                    {
                        "id": "first",
                        "agent": "a",
                        "action": "state.put",
                        "with": {"key": "k", "value": 1, "if_version": 0},
                    },
                    {
                        "id": "stale",
                        "agent": "a",
                        "action": "state.put",
                        "with": {"key": "k", "value": 2, "if_version": 0},
                    },
                ],
            }
        ],
        agents=AGENTS,
        caps={"light": None},
    )

    async def go() -> Any:
        coordinator: Coordinator = InProcessCoordinator()
        result, events = await run_plan(plan, coordinator=coordinator)
        value = await coordinator.state_get("run/run-test/k")
        return result, events, value

    result, events, value = on_virtual_clock(go)
    assert result.status is RunStatus.FAILED
    (stale,) = events_named(events, "step_finished", step="stale")
    assert "is at version 1, not 0: another writer got there first" in stale["reason"]
    assert value.value == 1 and value.version == 1
