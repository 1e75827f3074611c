"""The Docker engine as the docker actions use it: connecting, deadlines, inspecting,
waiting until a container is ready, and building results."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.actions._masking import container_secrets
from agents.base import ActionContext, ActionResult, Evidence
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import mask_command, mask_text
from streams.durations import Duration

T = TypeVar("T")

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
_EXCERPT = 4096


class _DockerParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str = Field(min_length=1, description="Container name or id.")
    base_url: str | None = Field(
        default=None, description="Engine URL; default $DOCKER_HOST, else the local socket."
    )
    timeout_s: Duration = Field(default=30.0, gt=0, description="Deadline of each engine call.")
    metric_prefix: str | None = Field(default=None, description="Default docker.<container>.")

    def prefix(self) -> str:
        return self.metric_prefix or f"docker.{self.container}"


@dataclass(frozen=True, slots=True)
class _Engine:
    """An open engine client; :meth:`call` runs one blocking SDK call under the deadline."""

    api: Any  # docker.APIClient (the SDK is untyped)
    url: str
    action: str
    timeout_s: float
    secrets: list[str] = field(default_factory=list)

    async def call(self, what: str, func: Callable[[], T], deadline_s: float | None = None) -> T:
        import docker.errors  # here: validating a plan must not pay for the SDK

        limit = deadline_s if deadline_s is not None else self.timeout_s
        try:
            with anyio.fail_after(limit):
                return await anyio.to_thread.run_sync(func, abandon_on_cancel=True)
        except TimeoutError:
            raise self.failed(f"{what}: no answer from the engine within {limit:g}s") from None
        except docker.errors.NotFound as exc:
            raise self.failed(f"{what}: not found ({exc.explanation})") from None
        except docker.errors.APIError as exc:
            raise self.failed(f"{what}: the engine refused: {exc.explanation or exc}") from None
        except (docker.errors.DockerException, OSError) as exc:
            raise self.failed(
                f"{what}: cannot reach the Docker engine: {exc} "
                "(fix: start dockerd, or set base_url or DOCKER_HOST)"
            ) from None

    def failed(self, reason: str) -> ActionFailed:
        return ActionFailed(self.action, mask_text(f"{reason} [engine {self.url}]", self.secrets))


def engine_url(ctx: ActionContext, base_url: str | None) -> str:
    """``base_url``, else DOCKER_HOST from the step's environment, then the daemon's."""
    found = base_url or ctx.env.get("DOCKER_HOST") or os.environ.get("DOCKER_HOST")
    return found or DEFAULT_DOCKER_URL


def _connect(url: str, timeout_s: int) -> Any:
    """A client speaking the engine's API version (capped at the SDK's); blocking."""
    import docker
    import docker.constants
    import docker.utils

    lowest = docker.constants.MINIMUM_DOCKER_API_VERSION
    highest = docker.constants.DEFAULT_DOCKER_API_VERSION
    if url.startswith("unix://"):
        # The SDK leaks its socket when connecting to a Unix socket fails: try it first.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_socket:
            probe_socket.settimeout(timeout_s)
            probe_socket.connect(url.removeprefix("unix://"))
    # version="auto" would ask in the constructor and leak the socket when that fails.
    probe = docker.DockerClient(base_url=url, version=lowest, timeout=timeout_s)
    try:
        server = str(probe.api.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    version = server if docker.utils.version_lt(server, highest) else highest
    return docker.DockerClient(base_url=url, version=version, timeout=timeout_s)


@asynccontextmanager
async def _engine(
    ctx: ActionContext, params: _DockerParams, action: str, extra_timeout_s: float = 0.0
) -> AsyncIterator[_Engine]:
    url = engine_url(ctx, params.base_url)
    http_timeout = math.ceil(params.timeout_s + extra_timeout_s)
    opener = _Engine(None, url, action, params.timeout_s)
    client = await opener.call("connect", lambda: _connect(url, http_timeout))
    try:
        yield _Engine(client.api, url, action, params.timeout_s)
    finally:
        client.close()


async def _inspect(engine: _Engine, container: str) -> dict[str, Any]:
    info: dict[str, Any] = await engine.call(
        f"inspect {container!r}", lambda: engine.api.inspect_container(container)
    )
    engine.secrets[:] = container_secrets(info.get("Config") or {})
    return info


def _state(info: Mapping[str, Any]) -> dict[str, Any]:
    """What evidence shows of a container: no env values, secrets masked."""
    config = info.get("Config") or {}
    state = info.get("State") or {}
    host = info.get("HostConfig") or {}
    secrets = container_secrets(config)
    return {
        "id": str(info.get("Id", ""))[:12],
        "name": str(info.get("Name", "")).lstrip("/"),
        "status": state.get("Status"),
        "running": bool(state.get("Running")),
        "health": (state.get("Health") or {}).get("Status"),
        "restart_count": info.get("RestartCount", 0),
        "exit_code": state.get("ExitCode"),
        "started_at": state.get("StartedAt"),
        "pid": state.get("Pid"),
        "image": config.get("Image"),
        "image_id": info.get("Image"),
        "entrypoint": mask_command(config.get("Entrypoint"), secrets),
        "command": mask_command(config.get("Cmd"), secrets),
        "env_names": sorted(str(e).partition("=")[0] for e in config.get("Env") or ()),
        "network_mode": host.get("NetworkMode"),
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name"),
        "device_requests": host.get("DeviceRequests") or [],
    }


def _state_metrics(prefix: str, state: Mapping[str, Any]) -> dict[str, float | str]:
    metrics: dict[str, float | str] = {
        f"{prefix}.running": 1.0 if state["running"] else 0.0,
        f"{prefix}.restart_count": float(state["restart_count"] or 0),
        f"{prefix}.status": str(state["status"]),
    }
    if state["health"] is not None:
        metrics[f"{prefix}.healthy"] = 1.0 if state["health"] == "healthy" else 0.0
        metrics[f"{prefix}.health"] = str(state["health"])
    if state["started_at"] and state["running"]:
        started = datetime.fromisoformat(str(state["started_at"])[:26].rstrip("Z") + "+00:00")
        metrics[f"{prefix}.uptime_s"] = round(max(0.0, time.time() - started.timestamp()), 3)
    return metrics


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _result(
    ok: bool,
    summary: str,
    check: str,
    detail: Mapping[str, Any],
    metrics: dict[str, float | str],
    excerpt: str | None = None,
    **extra: Any,
) -> ActionResult:
    """The result, with one piece of evidence: ``detail`` (and ``excerpt``, default the
    detail as JSON) and the metrics; ``sha256`` defaults to a digest of ``detail``."""
    text = json.dumps(detail, indent=1, default=str) if excerpt is None else excerpt
    sha256 = extra.pop("output_sha256", None) or _digest(detail)
    evidence = Evidence(
        check=check,
        source="docker",
        detail=detail,
        excerpt=text[-_EXCERPT:],
        sha256=sha256,
        metrics=dict(metrics),
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=ok,
        summary=summary,
        output=text,
        output_sha256=sha256,
        metrics=metrics,
        evidence=(evidence,),
        details=detail,
        **extra,
    )


def _close_stream(stream: Any) -> None:
    """Close an SDK stream: ``close()`` shuts its socket, but the HTTP response still holds
    the socket's file open until it is closed too."""
    stream.close()
    response = getattr(stream, "_response", None)
    if response is not None:
        response.close()


def _ready(info: Mapping[str, Any]) -> bool:
    state = info.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    return bool(state.get("Running")) and health in (None, "healthy")


def _gone(info: Mapping[str, Any]) -> bool:
    state = info.get("State") or {}
    return not state.get("Running") and not state.get("Restarting")


async def _wait_ready(engine: _Engine, container: str, timeout_s: float) -> dict[str, Any]:
    """Wait until the container runs (and is healthy, if it has a healthcheck) or has
    stopped for good; return its last inspection. Event-driven: the engine's event stream
    for the container wakes each check, and ends itself at the deadline."""

    def wait() -> dict[str, Any]:
        events = engine.api.events(
            until=time.time() + timeout_s, filters={"container": container}, decode=True
        )
        try:
            info: dict[str, Any] = engine.api.inspect_container(container)
            if _ready(info) or _gone(info):
                return info
            for _ in events:
                info = engine.api.inspect_container(container)
                if _ready(info) or _gone(info):
                    return info
            return engine.api.inspect_container(container)  # type: ignore[no-any-return]
        finally:
            _close_stream(events)

    return await engine.call(f"wait for {container!r}", wait, timeout_s + engine.timeout_s)
