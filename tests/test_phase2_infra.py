"""examples/phase2-infra.yaml's Redis-authentication stream against a real container.

The stream patches the compose file, re-creates the container with the password, proves AUTH
works and NOAUTH is gone (probes and the container's logs), and passes its gate. A second
run whose gate cannot pass rolls everything back: the compose file is byte-identical to
before and Redis accepts a password-less connection again.
"""

from __future__ import annotations

import copy
import os
import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import yaml

from agents import builtin_registry
from agents.plans import load_plan_text
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import RunStatus, Scheduler, SchedulerConfig, StreamStatus
from tests.servers_docker import DockerEngine, RedisContainer

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = """\
# the users' stack (trimmed): Redis answers without a password today
services:
  redis:
    image: redis:7          # keep: pinned by ops
    command: ["redis-server"]
    ports: ["6379:6379"]
"""


def redis_auth_plan(server: RedisContainer, compose: Path, *, impossible: bool) -> str:
    """The example's redis-auth stream, pointed at this test's container and compose file."""
    data = yaml.safe_load((ROOT / "examples" / "phase2-infra.yaml").read_text())
    data["streams"] = [s for s in data["streams"] if s["id"] == "redis-auth"]
    text = yaml.safe_dump(data, sort_keys=False)
    text = text.replace("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{server.port}/0")
    text = text.replace("container: redis\n", f"container: {server.name}\n")
    text = text.replace("../compose/docker-compose.yml", str(compose))
    if impossible:
        data = yaml.safe_load(text)
        gate = data["streams"][0]["gate"]
        gate["criteria"] = [*copy.deepcopy(gate["criteria"]), "redis.rtt_ms.p50 < 0"]
        gate["threshold"] = 1.0
        text = yaml.safe_dump(data, sort_keys=False)
    return text


async def run(text: str, password: str, engine: DockerEngine) -> tuple[Any, list[dict[str, Any]]]:
    plan, _ = load_plan_text(text, "phase2-infra.yaml")
    sink = MemorySink()
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password, "DOCKER_HOST": engine.url}
    scheduler = Scheduler(
        plan,
        run_id="e2e",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("e2e", [sink]),
        config=SchedulerConfig(env=env, kill_grace_s=2),
    )
    with anyio.fail_after(180):
        result = await scheduler.run()
    return result, sink.events


def test_redis_auth_stream_end_to_end(
    tmp_path: Path, redis_containers: Any, docker_engine: DockerEngine
) -> None:
    server: RedisContainer = redis_containers()
    assert server.client().ping()  # today: no password needed
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE)
    password = secrets.token_urlsafe(16)

    result, events = anyio.run(
        run, redis_auth_plan(server, compose, impossible=False), password, docker_engine
    )

    assert result.status is RunStatus.SUCCEEDED, result.streams["redis-auth"].reason
    (gate,) = [e for e in events if e["event"] == "gate_evaluated"]
    assert gate["passed"] and gate["missing_evidence"] == []
    patched = compose.read_text()
    assert "--requirepass" in patched and "${REDIS_PASSWORD}" in patched
    assert "keep: pinned by ops" in patched  # comments survive the patch
    with pytest.raises(redis.AuthenticationError):
        server.client().ping()  # NOAUTH now
    assert server.client(password).ping()
    logs = [
        e
        for e in events
        if e["event"] == "evidence_collected"
        and e["source"] == "docker"
        and "docker-logs-auth" in e["provides"]
    ]
    assert logs and logs[0]["metrics"]["redis.noauth_log_lines"] == 0
    assert password not in repr(events)  # the secret never reaches an event


def test_redis_auth_stream_rolls_everything_back_when_its_gate_cannot_pass(
    tmp_path: Path, redis_containers: Any, docker_engine: DockerEngine
) -> None:
    server: RedisContainer = redis_containers()
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE)
    before = compose.read_bytes()
    password = secrets.token_urlsafe(16)

    result, events = anyio.run(
        run, redis_auth_plan(server, compose, impossible=True), password, docker_engine
    )

    outcome = result.streams["redis-auth"]
    assert outcome.status is StreamStatus.FAILED and "gate failed" in outcome.reason
    (done,) = [e for e in events if e["event"] == "rollback_finished"]
    assert done["status"] == "completed" and done["within_budget"] is True
    undone = [e["step"] for e in events if e["event"] == "step_finished" and e.get("phase")]
    assert undone == ["restart-redis.undo", "patch-compose.undo", "check-reopened"]
    assert compose.read_bytes() == before  # byte-identical
    assert server.client().ping()  # the old, password-less connection works again
    assert password not in repr(events)
