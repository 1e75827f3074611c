"""The docker.* actions against a real Docker engine and real Redis containers.

The engine and the image come from :mod:`tests.servers_docker` (a private dockerd when no
engine answers). Containers run on the host's network, each Redis on a free port.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import redis

from agents.actions.docker import (
    DockerInspectParams,
    DockerLogsParams,
    DockerRecreateParams,
    DockerRestartParams,
    DockerStatsParams,
    mask_command,
    mask_text,
    register,
    run_inspect,
    run_logs,
    run_recreate,
    run_restart,
    run_stats,
)
from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from foundation.errors import ActionFailed

if TYPE_CHECKING:
    from tests.servers_docker import DockerEngine, RedisContainer

    Run = Callable[..., RedisContainer]


PASSWORD = "s3cret-Pa55word"


def ctx(tmp_path: Path, **env: str) -> ActionContext:
    return ActionContext(
        run_id="r",
        stream="redis-auth",
        step="s",
        agent="infrastructure-recovery",
        attempt=1,
        fences={},
        env={"PATH": os.environ["PATH"], **env},
        workdir=tmp_path,
        kill_grace_s=0.5,
    )


def shown(result: ActionResult) -> str:
    """Everything a result shows: summary, output, evidence and details."""
    evidence = [(e.check, dict(e.detail), e.excerpt, dict(e.metrics)) for e in result.evidence]
    return json.dumps([result.summary, result.output, evidence, dict(result.details)], default=str)


def test_masking_hides_passwords_in_commands_and_text() -> None:
    argv = ["redis-server", "--requirepass", "hunter22", "--masterauth=hunter33", "--port", "1"]
    assert mask_command(argv) == [
        "redis-server", "--requirepass", "***", "--masterauth=***", "--port", "1",
    ]  # fmt: skip
    text = "sh -c 'redis-server --requirepass hunter22' REDIS_PASSWORD=x1y2z3 redis://:pw9@h:1/0"
    masked = mask_text(text)
    assert "hunter22" not in masked and "x1y2z3" not in masked and "pw9" not in masked
    # A reference is not a secret: it stays readable.
    assert mask_text("--requirepass ${REDIS_PASSWORD}") == "--requirepass ${REDIS_PASSWORD}"
    assert mask_text("AUTH ok for token abc", secrets=["abc"]) == "AUTH ok for token ***"


def test_register_adds_the_five_actions() -> None:
    registry = ActionRegistry()
    register(registry)
    assert sorted(registry) == [
        "docker.inspect", "docker.logs", "docker.recreate", "docker.restart", "docker.stats",
    ]  # fmt: skip


def test_logs_params_reject_bad_patterns_and_times() -> None:
    with pytest.raises(ValueError, match="bad regular expression"):
        DockerLogsParams(container="c", count={"x": "(unclosed"})
    with pytest.raises(ValueError, match="not a time"):
        DockerLogsParams(container="c", since="yesterday-ish")
    with pytest.raises(ValueError, match="min_count"):
        DockerLogsParams(container="c", min_count={"nope": 1})


async def test_inspect_shows_state_health_and_env_names_not_values(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers(
        password=PASSWORD, env={"REDIS_PASSWORD": PASSWORD, "REDISCLI_AUTH": PASSWORD, "MODE": "t"}
    )
    server.wait_healthy()
    params = DockerInspectParams(container=server.name, base_url=docker_engine.url)
    result = await run_inspect(ctx(tmp_path), params)
    prefix = f"docker.{server.name}"
    assert result.ok
    assert result.metrics[f"{prefix}.running"] == 1.0
    assert result.metrics[f"{prefix}.healthy"] == 1.0
    assert result.metrics[f"{prefix}.restart_count"] == 0.0
    assert float(result.metrics[f"{prefix}.uptime_s"]) >= 0.0
    detail = result.evidence[0].detail
    assert detail["env_names"] == ["MODE", "REDISCLI_AUTH", "REDIS_PASSWORD"]
    assert detail["image"].startswith("orch-test/redis:")
    assert detail["command"][detail["command"].index("--requirepass") + 1] == "***"
    assert result.evidence[0].source == "docker" and result.evidence[0].sha256
    assert PASSWORD not in shown(result)


async def test_inspect_names_a_missing_container_and_an_unreachable_engine(
    tmp_path: Path, docker_engine: DockerEngine
) -> None:
    missing = DockerInspectParams(container="no-such-container-xyz", base_url=docker_engine.url)
    with pytest.raises(ActionFailed, match=r"no-such-container-xyz.*not found"):
        await run_inspect(ctx(tmp_path), missing)
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    # DOCKER_HOST from the step's environment is where the action looks by default.
    with pytest.raises(ActionFailed, match=r"cannot reach the Docker engine.*fix: start dockerd"):
        await run_inspect(ctx(tmp_path, DOCKER_HOST=nowhere), DockerInspectParams(container="x"))


async def test_inspect_requirements_fail_for_a_stopped_container(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers(healthcheck=False)
    server.container.stop(timeout=1)
    params = DockerInspectParams(
        container=server.name, base_url=docker_engine.url, require_running=True
    )
    result = await run_inspect(ctx(tmp_path), params)
    assert not result.ok
    assert result.metrics[f"docker.{server.name}.running"] == 0.0
    assert result.metrics[f"docker.{server.name}.status"] == "exited"


async def test_logs_count_auth_failures_of_a_service_and_excerpt_them(
    tmp_path: Path,
    redis_containers: Run,
    docker_client: Any,
    redis_image: str,
    docker_engine: DockerEngine,
) -> None:
    server = redis_containers(password=PASSWORD, healthcheck=False)
    # A "service" that talks to Redis without the password: its log shows NOAUTH errors.
    app = docker_client.containers.run(
        redis_image,
        ["/usr/bin/redis-cli", "-p", str(server.port), "-r", "3", "-i", "0.05", "ping"],
        name=f"{server.name}-app",
        detach=True,
        network_mode="host",
        labels=server.container.labels,  # removed with the test's containers
    )
    assert app.wait(timeout=20)["StatusCode"] == 0
    params = DockerLogsParams(
        container=app.name,
        base_url=docker_engine.url,
        since="10m",
        count={"redis.noauth_lines": "NOAUTH", "redis.pong_lines": "^PONG$"},
        max_count={"redis.noauth_lines": 0},
    )
    result = await run_logs(ctx(tmp_path), params)
    assert result.metrics["redis.noauth_lines"] == 3.0
    assert result.metrics["redis.pong_lines"] == 0.0
    assert not result.ok and "redis.noauth_lines=3 > 0" in result.summary
    evidence = result.evidence[0]
    assert evidence.excerpt.count("NOAUTH Authentication required.") == 3
    assert len(evidence.sha256 or "") == 64
    assert evidence.detail["lines_read"] >= 3


async def test_logs_since_a_time_and_fixed_string_filter(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers(password=PASSWORD, healthcheck=False)
    for _ in range(2):
        with server.client(PASSWORD) as client:
            client.ping()
    await anyio.sleep(1.1)  # log timestamps are the engine's: leave a clear gap
    mark = datetime.now(UTC).isoformat()
    for _ in range(3):
        with server.client(PASSWORD) as client:
            client.set("k", "v")
    await anyio.sleep(0.3)
    params = DockerLogsParams(
        container=server.name,
        base_url=docker_engine.url,
        fixed_strings=True,
        count={"redis.accepted_lines": "- Accepted 127.0.0.1:"},
    )
    everything = await run_logs(ctx(tmp_path), params)
    recent = await run_logs(ctx(tmp_path), params.model_copy(update={"since": mark}))
    assert float(everything.metrics["redis.accepted_lines"]) >= 5.0
    assert recent.metrics["redis.accepted_lines"] == 3.0
    lines = f"docker.{server.name}.log_lines"
    assert float(recent.metrics[lines]) < float(everything.metrics[lines])
    assert recent.ok and recent.evidence[0].detail["since"].startswith(mark[:16])
    assert PASSWORD not in shown(everything)


async def test_logs_follow_from_step_start_until_enough_lines(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers(healthcheck=False)
    params = DockerLogsParams(
        container=server.name,
        base_url=docker_engine.url,
        since="step_start",
        follow_s=20,
        count={"redis.closed_lines": "Client closed connection"},
        min_count={"redis.closed_lines": 2},
    )
    results: list[ActionResult] = []

    async def follow() -> None:
        results.append(await run_logs(ctx(tmp_path), params))

    began = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await anyio.sleep(0.5)
        for _ in range(2):
            with server.client() as client:
                client.ping()
    assert results[0].ok, results[0].summary
    assert results[0].metrics["redis.closed_lines"] == 2.0
    assert "Ready to accept connections" not in results[0].output  # that was before the step
    assert time.monotonic() - began < 15  # ended once the lines came, not at follow_s


async def test_restart_waits_until_healthy(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers()
    params = DockerRestartParams(
        container=server.name, base_url=docker_engine.url, stop_timeout_s=2, ready_timeout_s=20
    )
    result = await run_restart(ctx(tmp_path), params)
    assert result.ok, result.summary
    before, after = result.evidence[0].detail["before"], result.evidence[0].detail["after"]
    assert after["started_at"] != before["started_at"] and after["pid"] != before["pid"]
    assert after["health"] == "healthy"
    assert result.metrics[f"docker.{server.name}.healthy"] == 1.0
    assert float(result.metrics[f"docker.{server.name}.restart_s"]) > 0
    with server.client() as client:
        assert client.ping()


async def test_restart_reports_a_container_that_never_gets_healthy(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    # Password set, but the health check has none: NOAUTH, so never healthy.
    server = redis_containers(password=PASSWORD)
    params = DockerRestartParams(
        container=server.name, base_url=docker_engine.url, stop_timeout_s=1, ready_timeout_s=3
    )
    began = time.monotonic()
    result = await run_restart(ctx(tmp_path), params)
    assert not result.ok
    assert "not ready within 3s" in result.summary
    assert time.monotonic() - began < 12
    assert PASSWORD not in shown(result)


async def test_stats_measure_cpu_and_memory(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers(healthcheck=False)
    params = DockerStatsParams(
        container=server.name, base_url=docker_engine.url, metric_prefix="redis"
    )
    result = await run_stats(ctx(tmp_path), params)
    assert result.ok
    assert float(result.metrics["redis.cpu_percent"]) >= 0.0
    assert (
        0
        < float(result.metrics["redis.mem_usage_bytes"])
        < float(result.metrics["redis.mem_limit_bytes"])
    )
    assert float(result.metrics["redis.pids"]) >= 1.0
    assert "MiB" in result.evidence[0].excerpt


def _config(info: dict[str, Any]) -> tuple[Any, Any, str]:
    return info["Config"], info["HostConfig"], info["Name"]


async def test_recreate_adds_requirepass_and_undo_restores_the_exact_config(
    tmp_path: Path, redis_containers: Run, docker_client: Any, docker_engine: DockerEngine
) -> None:
    server = redis_containers(env={"MODE": "test"})
    original = server.reload()
    params = DockerRecreateParams(
        container=server.name,
        base_url=docker_engine.url,
        command_flags={"--requirepass": PASSWORD},
        env={"REDISCLI_AUTH": PASSWORD, "MODE": None},
        stop_timeout_s=2,
        ready_timeout_s=20,
    )
    result = await run_recreate(ctx(tmp_path), params)
    assert result.ok, result.summary
    assert result.evidence[0].detail["changed"] == ["Config.Cmd", "Config.Env"]
    assert PASSWORD not in shown(result)
    changed = server.reload()
    assert changed["Id"] != original["Id"] and changed["State"]["Health"]["Status"] == "healthy"
    assert f"REDISCLI_AUTH={PASSWORD}" in changed["Config"]["Env"]
    assert not any(e.startswith("MODE=") for e in changed["Config"]["Env"])
    with server.client() as client, pytest.raises(redis.AuthenticationError):
        client.ping()
    with server.client(PASSWORD) as client:
        assert client.ping()
    # Only the new container is left under that name: the old one was removed.
    names = [c.name for c in docker_client.containers.list(all=True)]
    assert not any(n.startswith(f"{server.name}-orch-replaced") for n in names)

    assert result.undo is not None and result.undo.action == "docker.recreate"
    undo = DockerRecreateParams.model_validate(dict(result.undo.params))
    undone = await run_recreate(ctx(tmp_path), undo)
    assert undone.ok, undone.summary
    restored = server.reload()
    assert _config(restored) == _config(original)
    with server.client() as client:
        assert client.ping()


async def test_recreate_that_does_not_come_up_puts_the_original_back(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    server = redis_containers()
    original = server.reload()
    # requirepass without REDISCLI_AUTH for the health check: the new one is never healthy.
    params = DockerRecreateParams(
        container=server.name,
        base_url=docker_engine.url,
        command_flags={"--requirepass": PASSWORD},
        stop_timeout_s=1,
        ready_timeout_s=3,
    )
    result = await run_recreate(ctx(tmp_path), params)
    assert not result.ok
    assert "did not become ready" in result.summary and "is back" in result.summary
    assert PASSWORD not in shown(result)
    back = server.reload()
    assert back["Id"] == original["Id"] and back["State"]["Running"]
    with server.client() as client:
        assert client.ping()


async def test_recreate_records_gpu_device_requests_and_undo_removes_them(
    tmp_path: Path, redis_containers: Run, docker_engine: DockerEngine
) -> None:
    # Stopped, so no GPU driver is needed to create it (this machine has none).
    server = redis_containers(healthcheck=False)
    server.container.stop(timeout=1)
    original = server.reload()
    params = DockerRecreateParams.model_validate(
        {
            "container": server.name,
            "base_url": docker_engine.url,
            "device_requests": [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}],
        }
    )
    result = await run_recreate(ctx(tmp_path), params)
    assert result.ok, result.summary
    requests = server.reload()["HostConfig"]["DeviceRequests"]
    assert requests == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]],
         "Options": None}
    ]  # fmt: skip
    assert result.evidence[0].detail["changed"] == ["HostConfig.DeviceRequests"]
    assert result.undo is not None
    await run_recreate(ctx(tmp_path), DockerRecreateParams.model_validate(result.undo.params))
    assert _config(server.reload()) == _config(original)


def test_recreate_params_need_a_change_or_a_spec() -> None:
    with pytest.raises(ValueError, match="nothing to change"):
        DockerRecreateParams(container="c")
    with pytest.raises(ValueError, match="either spec"):
        DockerRecreateParams(container="c", env={"A": "1"}, spec={"config": {}, "host_config": {}})
