"""Docker engine actions: ``docker.inspect``, ``docker.logs``, ``docker.restart``,
``docker.stats`` and ``docker.recreate``.

They talk to the engine with the Docker SDK over ``base_url`` (default ``$DOCKER_HOST`` from
the step's environment, then the daemon's, else ``unix:///var/run/docker.sock``). The SDK
blocks, so every engine call runs in a worker thread under a deadline of ``timeout_s``
(waits for a container to come up have their own ``ready_timeout_s``).

Metrics are named ``<prefix>.<what>`` with the prefix ``docker.<container>`` unless
``metric_prefix`` says otherwise. Secrets never reach evidence, summaries or errors:
values of environment variables named like secrets (``REDIS_PASSWORD``, ``API_TOKEN``,
``REDISCLI_AUTH``: :func:`context_packages.masking.is_secret_name`), the value after flags
such as ``--requirepass``, and passwords in URLs are shown as ``***`` (see
:func:`mask_command` and :func:`mask_text`), and those values are scrubbed from log lines
too. Only the UndoRecord of ``docker.recreate`` holds them, since it
must re-create the original exactly: treat undo parameters as secret.

Engine failures (unreachable, no such container, a call past its deadline, a refused
request) raise :class:`~orchestrator.errors.ActionFailed` naming the engine and the fix;
checks that do not hold (not running, too few matching log lines) return ``ok=False``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import docker
import docker.constants
import docker.errors
import docker.utils
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from context_packages.masking import MASK, is_secret_name
from orchestrator.errors import ActionFailed
from orchestrator.events import utc_timestamp
from orchestrator.redaction import scrub, url_secrets
from streams.durations import Duration, parse_duration

__all__ = [
    "DeviceRequest",
    "DockerInspectParams",
    "DockerLogsParams",
    "DockerRecreateParams",
    "DockerRestartParams",
    "DockerStatsParams",
    "mask_command",
    "mask_text",
    "register",
    "run_inspect",
    "run_logs",
    "run_recreate",
    "run_restart",
    "run_stats",
]

T = TypeVar("T")

DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
_MIN_API = docker.constants.MINIMUM_DOCKER_API_VERSION
_MAX_API = docker.constants.DEFAULT_DOCKER_API_VERSION
_EXCERPT = 4096
# Flags whose value is a secret although their name does not say so (redis-cli -a PASS).
_ALSO_SECRET_FLAGS = frozenset({"-a", "--masterauth"})
_VALUE = r"(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
# The value is looked at, not consumed, so that a quoted argument ('-c "... --pass X"')
# is searched too.
_INLINE_FLAG = re.compile(r"(?<!\S)(--?[A-Za-z][\w.\-]*)([ \t]+|=)(?=" + _VALUE + ")")
_INLINE_ASSIGNMENT = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]*)(=|:[ \t]+)(?=" + _VALUE + ")")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)([^@\s/]+)(@)")


def _secret_flag(flag: str) -> bool:
    return flag.lower() in _ALSO_SECRET_FLAGS or (
        flag.startswith("-") and is_secret_name(flag.lstrip("-"))
    )


def _reference(value: str) -> bool:
    # ${REDIS_PASSWORD} names where the secret comes from; it is not the secret: keep it.
    return value.lstrip("\"'").startswith("$")


def _mask_values(pattern: re.Pattern[str], text: str, secret: Callable[[str], bool]) -> str:
    """Mask the value after each ``pattern`` match (name, separator, value lookahead)
    whose name ``secret`` accepts."""
    parts: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        name, _, value = match.groups()
        if match.start() < done or not secret(name) or _reference(value):
            continue
        parts += [text[done : match.end()], MASK]
        done = match.end() + len(value)
    return "".join([*parts, text[done:]])


def mask_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the known ``secrets`` values, the value after a secret flag
    (``--requirepass X``), of a secret-named assignment (``TOKEN=X``, ``PASSWORD: X``) and
    URL passwords replaced by ``***``. Names are judged by
    :func:`context_packages.masking.is_secret_name`; ``${VAR}`` references stay."""
    text = scrub(text, secrets)
    text = _URL_PASSWORD.sub(
        lambda m: m.group(0) if _reference(m.group(2)) else f"{m.group(1)}{MASK}@", text
    )
    text = _mask_values(_INLINE_FLAG, text, _secret_flag)
    return _mask_values(_INLINE_ASSIGNMENT, text, is_secret_name)


def mask_command(argv: Sequence[str] | None, secrets: Sequence[str] = ()) -> list[str]:
    """A command with the value after each secret flag (``--requirepass X``) masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv or ():
        flag, eq, value = arg.partition("=")
        if hide_next:
            out.append(arg if _reference(arg) else MASK)
            hide_next = False
        elif _secret_flag(flag):
            out.append(f"{flag}={MASK}" if eq and not _reference(value) else arg)
            hide_next = not eq
        else:
            out.append(mask_text(arg, secrets))
    return out


def _container_secrets(config: Mapping[str, Any]) -> list[str]:
    """Secret values in a container's env and command, to scrub them from any text."""
    found: list[str] = []
    for item in config.get("Env") or ():
        name, _, value = str(item).partition("=")
        if is_secret_name(name) and value:
            found.append(value)
        found += url_secrets(value) if "://" in value else []
    argv = [str(a) for a in (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))]
    shown = mask_command(argv)
    found += [arg for arg, masked in zip(argv, shown, strict=True) if masked == MASK]
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and _secret_flag(flag):
            found.append(value)
        found += [
            m.group(3).strip("\"'") for m in _INLINE_FLAG.finditer(arg) if _secret_flag(m.group(1))
        ]
    return [s for s in found if s and not _reference(s)]


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


class DockerInspectParams(_DockerParams):
    """``docker.inspect``: state, health, restarts, image, command, env names."""

    require_running: bool = False
    require_healthy: bool = False


class DockerStatsParams(_DockerParams):
    """``docker.stats``: one sample of CPU %, memory, PIDs, network and block I/O."""


class DockerRestartParams(_DockerParams):
    """``docker.restart``: restart, then wait until running (and healthy, if it has a
    healthcheck) within ``ready_timeout_s``."""

    stop_timeout_s: Duration = Field(default=10.0, ge=0, description="Before SIGKILL.")
    ready_timeout_s: Duration = Field(default=60.0, gt=0)


def _since_value(value: str | None) -> str | None:
    if value is not None and value != "step_start":
        _parse_time(value, time.time())
    return value


def _parse_time(value: str, now: float) -> float:
    """An absolute Unix time from ``10m`` (ago), an ISO 8601 time or a Unix time."""
    try:
        return now - parse_duration(value) if value[-1:].isalpha() else float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"not a time: {value!r}; write a duration ago like 10m, an ISO 8601 time, "
            "a Unix time or step_start"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class DockerLogsParams(_DockerParams):
    """``docker.logs``: read the logs (``since``/``until``: a duration ago like ``10m``, an
    ISO 8601 time, a Unix time, or ``step_start`` for when this step began), count lines per
    pattern (``count``: metric name -> pattern) and keep the lines ``match`` selects (default:
    those any count pattern matches) as the excerpt. ``follow_s`` keeps reading new lines that
    long, ending early once every ``min_count`` holds."""

    since: str | None = None
    until: str | None = None
    tail: int | None = Field(default=None, ge=0)
    match: str | None = Field(default=None, description="Lines kept in the excerpt.")
    count: dict[str, str] = Field(default_factory=dict)
    fixed_strings: bool = Field(default=False, description="Patterns are plain substrings.")
    ignore_case: bool = False
    min_count: dict[str, int] = Field(default_factory=dict)
    max_count: dict[str, int] = Field(default_factory=dict)
    follow_s: Duration = Field(default=0.0, ge=0)
    stdout: bool = True
    stderr: bool = True
    excerpt_lines: int = Field(default=40, ge=1, le=1000)

    _since = field_validator("since", "until")(_since_value)

    @model_validator(mode="after")
    def _check_patterns(self) -> DockerLogsParams:
        for name, pattern in [("match", self.match), *self.count.items()]:
            if pattern is not None:
                try:
                    self.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{name}: bad regular expression {pattern!r}: {exc}") from None
        unknown = sorted((set(self.min_count) | set(self.max_count)) - set(self.count))
        if unknown:
            raise ValueError(f"min_count/max_count name no pattern in count: {unknown}")
        return self

    def compile(self, pattern: str) -> re.Pattern[str]:
        text = re.escape(pattern) if self.fixed_strings else pattern
        return re.compile(text, re.IGNORECASE if self.ignore_case else 0)


class DeviceRequest(BaseModel):
    """A device request, as ``--gpus``/compose's ``deploy.resources.reservations.devices``
    write it: ``{driver: nvidia, count: -1, capabilities: [[gpu]]}`` asks for every GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str = ""
    count: int = Field(default=0, ge=-1, description="-1: all devices.")
    device_ids: list[str] = Field(default_factory=list)
    capabilities: list[list[str]] = Field(default_factory=list)
    options: dict[str, str] = Field(default_factory=dict)

    def api(self) -> dict[str, Any]:
        return {
            "Driver": self.driver,
            "Count": self.count,
            "DeviceIDs": self.device_ids or None,
            "Capabilities": self.capabilities or None,
            "Options": self.options or None,
        }


class DockerRecreateParams(_DockerParams):
    """``docker.recreate``: stop the container, create it again with the changes and start
    it (if it was running), wait until running and healthy, then remove the old one. Changes:
    ``command`` (the whole argv), ``command_flags`` (``--flag: value`` set, replacing the
    value of a flag already there; ``null`` removes flag and value), ``env`` (set; ``null``
    removes), ``device_requests`` (replace; ``[]`` removes). ``spec`` instead replaces the
    whole configuration with one an earlier recreate recorded (this is how undo works).
    If the new container does not come up, the original is put back as it was."""

    command: list[str] | None = None
    command_flags: dict[str, str | None] = Field(default_factory=dict)
    env: dict[str, str | None] = Field(default_factory=dict)
    device_requests: list[DeviceRequest] | None = None
    spec: dict[str, Any] | None = None
    stop_timeout_s: Duration = Field(default=10.0, ge=0)
    ready_timeout_s: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> DockerRecreateParams:
        changes = (
            self.command is not None
            or self.command_flags
            or self.env
            or self.device_requests is not None
        )
        if self.spec is not None and changes:
            raise ValueError("give either spec (a recorded configuration) or changes, not both")
        if self.spec is None and not changes:
            raise ValueError(
                "nothing to change: give command, command_flags, env or device_requests"
            )
        if self.spec is not None and not {"config", "host_config"} <= set(self.spec):
            raise ValueError("spec must be one recorded by docker.recreate (config, host_config)")
        return self


@dataclass(frozen=True, slots=True)
class _Engine:
    """An open engine client; :meth:`call` runs one blocking SDK call under the deadline."""

    api: Any  # docker.APIClient (the SDK is untyped)
    url: str
    action: str
    timeout_s: float
    secrets: list[str] = field(default_factory=list)

    async def call(self, what: str, func: Callable[[], T], deadline_s: float | None = None) -> T:
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
    if url.startswith("unix://"):
        # The SDK leaks its socket when connecting to a Unix socket fails: try it first.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe_socket:
            probe_socket.settimeout(timeout_s)
            probe_socket.connect(url.removeprefix("unix://"))
    # version="auto" would ask in the constructor and leak the socket when that fails.
    probe = docker.DockerClient(base_url=url, version=_MIN_API, timeout=timeout_s)
    try:
        server = str(probe.api.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    version = server if docker.utils.version_lt(server, _MAX_API) else _MAX_API
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
    engine.secrets[:] = _container_secrets(info.get("Config") or {})
    return info


def _state(info: Mapping[str, Any]) -> dict[str, Any]:
    """What evidence shows of a container: no env values, secrets masked."""
    config = info.get("Config") or {}
    state = info.get("State") or {}
    host = info.get("HostConfig") or {}
    secrets = _container_secrets(config)
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


async def run_inspect(ctx: ActionContext, params: DockerInspectParams) -> ActionResult:
    """Inspect the container; ok unless ``require_running``/``require_healthy`` fail."""
    async with _engine(ctx, params, "docker.inspect") as engine:
        info = await _inspect(engine, params.container)
    state = _state(info)
    metrics = _state_metrics(params.prefix(), state)
    ok = (state["running"] or not params.require_running) and (
        state["health"] == "healthy" or not params.require_healthy
    )
    health = f", {state['health']}" if state["health"] else ""
    summary = f"{params.container}: {state['status']}{health}, {state['restart_count']} restarts"
    return _result(ok, summary, f"docker inspect {params.container}", state, metrics)


class _LogScan:
    """Counts and excerpt of one pass over the logs; hashes every byte read."""

    def __init__(self, params: DockerLogsParams, secrets: Sequence[str]) -> None:
        self.params = params
        self.secrets = list(secrets)
        self.counts = dict.fromkeys(params.count, 0)
        self.lines = self.matched = self.total_bytes = 0
        self.kept: deque[str] = deque(maxlen=params.excerpt_lines)
        self._hash = hashlib.sha256()
        self._partial = b""
        self._patterns = {name: params.compile(p) for name, p in params.count.items()}
        self._match = params.compile(params.match) if params.match else None

    def feed(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        self._hash.update(chunk)
        *whole, self._partial = (self._partial + chunk).split(b"\n")
        for raw in whole:
            self._line(raw.decode("utf-8", "replace"))

    def finish(self) -> None:
        if self._partial:
            self._line(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def _line(self, text: str) -> None:
        stamp, _, body = text.partition(" ")  # timestamps=True: "<RFC 3339> <line>"
        self.lines += 1
        hits = [name for name, pattern in self._patterns.items() if pattern.search(body)]
        for name in hits:
            self.counts[name] += 1
        keep = self._match.search(body) if self._match else (hits or not self._patterns)
        if keep:
            self.matched += 1
            self.kept.append(f"{stamp} {mask_text(body.rstrip(), self.secrets)}")

    def satisfied(self) -> bool:
        """True once every ``min_count`` holds (never without one)."""
        mins = self.params.min_count
        return bool(mins) and all(self.counts[k] >= n for k, n in mins.items())

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def _resolve(value: str | None, started: float) -> float | None:
    if value is None:
        return None
    return started if value == "step_start" else _parse_time(value, started)


async def run_logs(ctx: ActionContext, params: DockerLogsParams) -> ActionResult:
    """Read and filter the logs; ok when every ``min_count``/``max_count`` bound holds."""
    started = time.time()
    since, until = _resolve(params.since, started), _resolve(params.until, started)
    if params.follow_s:
        until = min(until or math.inf, time.time() + params.follow_s)
    async with _engine(ctx, params, "docker.logs", params.follow_s) as engine:
        info = await _inspect(engine, params.container)
        scan = _LogScan(params, engine.secrets)

        def read() -> None:
            stream = engine.api.logs(
                info["Id"],
                stdout=params.stdout,
                stderr=params.stderr,
                stream=True,
                timestamps=True,
                tail=params.tail if params.tail is not None else "all",
                since=since,
                until=until,
                follow=bool(params.follow_s),
            )
            try:
                for chunk in stream:
                    scan.feed(chunk)
                    if params.follow_s and scan.satisfied():
                        break
            finally:
                _close_stream(stream)
            scan.finish()

        await engine.call(f"logs of {params.container!r}", read, params.timeout_s + params.follow_s)
    prefix = params.prefix()
    metrics: dict[str, float | str] = {name: float(n) for name, n in scan.counts.items()}
    metrics[f"{prefix}.log_lines"] = float(scan.lines)
    metrics[f"{prefix}.log_bytes"] = float(scan.total_bytes)
    metrics[f"{prefix}.matched_lines"] = float(scan.matched)
    problems = [
        f"{k}={scan.counts[k]} < {n}" for k, n in params.min_count.items() if scan.counts[k] < n
    ]
    problems += [
        f"{k}={scan.counts[k]} > {n}" for k, n in params.max_count.items() if scan.counts[k] > n
    ]
    counted = ", ".join(f"{k}={v}" for k, v in scan.counts.items())
    summary = (
        f"{params.container}: {scan.lines} log lines, {scan.matched} kept"
        + (f" ({counted})" if counted else "")
        + (f"; failed: {', '.join(problems)}" if problems else "")
    )
    when = {
        "since": datetime.fromtimestamp(since, UTC).isoformat() if since else None,
        "until": datetime.fromtimestamp(until, UTC).isoformat() if until else None,
    }
    detail = {
        "container": params.container,
        **when,
        "lines_read": scan.lines,
        "bytes_read": scan.total_bytes,
        "patterns": dict(params.count),
        "match": params.match,
        "counts": dict(scan.counts),
    }
    check = f"docker logs {params.container}"
    return _result(
        not problems,
        summary,
        check,
        detail,
        metrics,
        "\n".join(scan.kept),
        output_sha256=scan.sha256,
        output_bytes=scan.total_bytes,
    )


async def run_restart(ctx: ActionContext, params: DockerRestartParams) -> ActionResult:
    """Restart; ok when running (and healthy, with a healthcheck) within the deadline."""
    extra = params.stop_timeout_s + params.ready_timeout_s
    async with _engine(ctx, params, "docker.restart", extra) as engine:
        before = await _inspect(engine, params.container)
        began = time.monotonic()
        await engine.call(
            f"restart {params.container!r}",
            lambda: engine.api.restart(before["Id"], timeout=math.ceil(params.stop_timeout_s)),
            params.timeout_s + params.stop_timeout_s,
        )
        after = await _wait_ready(engine, before["Id"], params.ready_timeout_s)
        took = time.monotonic() - began
    old, new = _state(before), _state(after)
    ok = _ready(after) and new["started_at"] != old["started_at"]
    metrics = _state_metrics(params.prefix(), new)
    metrics[f"{params.prefix()}.restart_s"] = round(took, 3)
    verdict = "ready" if ok else f"not ready within {params.ready_timeout_s:g}s"
    summary = (
        f"restarted {params.container} in {took:.1f}s: {new['status']}"
        + (f", {new['health']}" if new["health"] else "")
        + f" ({verdict})"
    )
    detail = {"before": old, "after": new}
    return _result(ok, summary, f"docker restart {params.container}", detail, metrics)


def _cpu_percent(stats: Mapping[str, Any]) -> float:
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or ())
    if system_delta <= 0 or cpu_delta < 0:
        return 0.0
    return float(cpu_delta) / float(system_delta) * float(cpus or 1) * 100.0


async def run_stats(ctx: ActionContext, params: DockerStatsParams) -> ActionResult:
    """One stats sample (the engine takes about a second for the CPU delta); ok if running."""
    async with _engine(ctx, params, "docker.stats") as engine:
        info = await _inspect(engine, params.container)
        stats: dict[str, Any] = await engine.call(
            f"stats of {params.container!r}", lambda: engine.api.stats(info["Id"], stream=False)
        )
    memory = stats.get("memory_stats") or {}
    inner = memory.get("stats") or {}
    # As `docker stats` counts it: page cache that can be dropped is not in use.
    cache = inner.get("total_inactive_file", inner.get("inactive_file", 0))
    used = max(0, int(memory.get("usage", 0)) - int(cache))
    limit = int(memory.get("limit", 0))
    nets = (stats.get("networks") or {}).values()
    blkio = (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    p = params.prefix()
    metrics: dict[str, float | str] = {
        f"{p}.cpu_percent": round(_cpu_percent(stats), 3),
        f"{p}.mem_usage_bytes": float(used),
        f"{p}.mem_limit_bytes": float(limit),
        f"{p}.mem_percent": round(used / limit * 100.0, 3) if limit else 0.0,
        f"{p}.pids": float((stats.get("pids_stats") or {}).get("current", 0)),
        f"{p}.net_rx_bytes": float(sum(n.get("rx_bytes", 0) for n in nets)),
        f"{p}.net_tx_bytes": float(sum(n.get("tx_bytes", 0) for n in nets)),
        f"{p}.blk_read_bytes": float(sum(e["value"] for e in blkio if e.get("op") == "Read")),
        f"{p}.blk_write_bytes": float(sum(e["value"] for e in blkio if e.get("op") == "Write")),
    }
    running = bool((info.get("State") or {}).get("Running"))
    summary = (
        f"{params.container}: cpu {metrics[f'{p}.cpu_percent']}%, "
        f"mem {used / 2**20:.1f} MiB / {limit / 2**20:.0f} MiB, "
        f"{int(float(metrics[f'{p}.pids']))} pids" + ("" if running else " (not running)")
    )
    detail = {"container": params.container, "read": stats.get("read")}
    return _result(
        running,
        summary,
        f"docker stats {params.container}",
        detail,
        metrics,
        summary,
        output_sha256=_digest(stats),
    )


def _spec_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """Everything needed to create the container again as it is: name, config, host
    config, networks (with their aliases, less the one named after the old id)."""
    short_id = str(info.get("Id", ""))[:12]
    networks: dict[str, Any] = {}
    for name, endpoint in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [a for a in endpoint.get("Aliases") or () if a != short_id]
        networks[name] = {
            "IPAMConfig": endpoint.get("IPAMConfig"),
            "Links": endpoint.get("Links"),
            "Aliases": aliases or None,
            "DriverOpts": endpoint.get("DriverOpts"),
        }
    return {
        "name": str(info["Name"]).lstrip("/"),
        "image_id": info.get("Image"),
        "config": copy.deepcopy(info["Config"]),
        "host_config": copy.deepcopy(info["HostConfig"]),
        "networks": networks,
    }


def _set_flags(argv: list[str], flags: Mapping[str, str | None]) -> list[str]:
    out = list(argv)
    for flag, value in flags.items():
        if flag in out:
            at = out.index(flag)
            has_value = at + 1 < len(out) and not out[at + 1].startswith("--")
            del out[at : at + (2 if has_value else 1)]
            if value is not None:
                out[at:at] = [flag, value]
        elif value is not None:
            out += [flag, value]
    return out


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _from_env(value: str, env: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by the step environment's NAME: how a plan hands a secret (a new
    Redis password) to a container without writing it down. A missing name is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ActionFailed(
                "docker.recreate",
                f"${{{name}}} is not in the step's "
                f"environment (fix: set {name} and add it to ORCH_PASS_ENV)",
            )
        return env[name]

    return _REFERENCE.sub(one, value)


def _changed(
    params: DockerRecreateParams, old: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    if params.spec is not None:
        return copy.deepcopy(params.spec)
    new = copy.deepcopy(dict(old))
    config, host = new["config"], new["host_config"]
    if params.command is not None:
        config["Cmd"] = [_from_env(arg, env) for arg in params.command]
    if params.command_flags:
        flags = {
            k: (_from_env(v, env) if v is not None else None)
            for k, v in params.command_flags.items()
        }
        config["Cmd"] = _set_flags(list(config.get("Cmd") or ()), flags)
    if params.env:
        env_now = dict(str(e).partition("=")[::2] for e in config.get("Env") or ())
        for name, value in params.env.items():
            if value is None:
                env_now.pop(name, None)
            else:
                env_now[name] = _from_env(value, env)
        config["Env"] = [f"{k}={v}" for k, v in env_now.items()]
    if params.device_requests is not None:
        host["DeviceRequests"] = [d.api() for d in params.device_requests] or None
    return new


def _create(engine: _Engine, spec: Mapping[str, Any], volumes: Sequence[str]) -> str:
    """Create the container of ``spec`` (blocking; run it in a thread); return its id."""
    config = copy.deepcopy(dict(spec["config"]))
    host = copy.deepcopy(dict(spec["host_config"]))
    if volumes:  # the old container's anonymous volumes keep their data
        host["Binds"] = [*(host.get("Binds") or ()), *volumes]
    networks = dict(spec.get("networks") or {})
    mode = str(host.get("NetworkMode") or "")
    first = mode if mode in networks else next(iter(networks), None)
    if first is not None:
        config["NetworkingConfig"] = {"EndpointsConfig": {first: networks.pop(first)}}
    image_id = spec.get("image_id")
    if image_id and engine.api.inspect_image(config["Image"]).get("Id") != image_id:
        config["Image"] = image_id  # the tag moved: keep the exact image
    config["HostConfig"] = host
    created = engine.api.create_container_from_config(config, name=spec["name"])
    for name, endpoint in networks.items():
        engine.api.connect_container_to_network(
            created["Id"], name, aliases=endpoint.get("Aliases"), links=endpoint.get("Links")
        )
    return str(created["Id"])


async def run_recreate(ctx: ActionContext, params: DockerRecreateParams) -> ActionResult:
    """Re-create the container with the changes; its UndoRecord re-creates the original."""
    extra = params.stop_timeout_s + params.ready_timeout_s
    async with _engine(ctx, params, "docker.recreate", extra) as engine:
        info = await _inspect(engine, params.container)
        old = _spec_of(info)
        new = _changed(params, old, ctx.env)
        name, old_id = old["name"], info["Id"]
        was_running = bool(info["State"]["Running"])
        engine.secrets[:] = [*engine.secrets, *_container_secrets(new["config"])]
        volumes = [
            f"{m['Name']}:{m['Destination']}"
            for m in info.get("Mounts") or ()
            if m.get("Type") == "volume" and len(str(m.get("Name"))) == 64
        ]
        parked = f"{name}-orch-replaced-{old_id[:8]}"
        began = time.monotonic()
        api = engine.api
        stop = math.ceil(params.stop_timeout_s)
        await engine.call(f"stop {name!r}", lambda: api.stop(old_id, timeout=stop), extra)
        await engine.call(f"rename {name!r}", lambda: api.rename(old_id, parked))
        new_id: str | None = None
        try:
            new_id = await engine.call(f"create {name!r}", lambda: _create(engine, new, volumes))
            if was_running:
                await engine.call(f"start {name!r}", lambda: api.start(new_id))
                after = await _wait_ready(engine, new_id, params.ready_timeout_s)
                if not _ready(after):
                    raise engine.failed(
                        f"the new {name!r} did not become ready within "
                        f"{params.ready_timeout_s:g}s: {_state(after)['status']}"
                        f"/{_state(after)['health']}"
                    )
            else:
                after = await engine.call(
                    f"inspect {name!r}", lambda: api.inspect_container(new_id)
                )
        except BaseException as exc:
            # Put the original back as it was, even when cancelled: remove what we made.
            back = "is back"
            with anyio.move_on_after(engine.timeout_s + extra, shield=True):
                try:
                    await _put_back(
                        engine, new_id, old_id, name, was_running, params.ready_timeout_s
                    )
                except ActionFailed as failed:
                    back = f"could not be put back ({failed.reason}): it is {parked!r}, stopped"
            if isinstance(exc, ActionFailed):
                return ActionResult(
                    ok=False,
                    summary=f"{exc.reason}; the original {name!r} {back}",
                    details={"before": _state(info)},
                )
            raise
        await engine.call(f"remove the old {name!r}", lambda: api.remove_container(old_id))
        took = time.monotonic() - began
    before, now = _state(info), _state(after)
    changed = sorted(
        [
            f"Config.{k}"
            for k in set(old["config"]) | set(new["config"])
            if old["config"].get(k) != new["config"].get(k)
        ]
        + [
            f"HostConfig.{k}"
            for k in set(old["host_config"]) | set(new["host_config"])
            if old["host_config"].get(k) != new["host_config"].get(k)
        ]
    )
    metrics = _state_metrics(params.prefix(), now)
    metrics[f"{params.prefix()}.recreate_s"] = round(took, 3)
    detail = {"before": before, "after": now, "changed": changed}
    undo_params: dict[str, Any] = {
        "container": name,
        "spec": old,
        "stop_timeout_s": params.stop_timeout_s,
        "ready_timeout_s": params.ready_timeout_s,
    }
    if params.base_url:
        undo_params["base_url"] = params.base_url
    undo = UndoRecord(
        "docker.recreate", undo_params, f"re-create {name} with its previous configuration"
    )
    summary = f"re-created {name} in {took:.1f}s ({', '.join(changed) or 'no change'}): " + (
        now["status"] + (f", {now['health']}" if now["health"] else "")
    )
    return _result(True, summary, f"docker recreate {name}", detail, metrics, undo=undo)


async def _put_back(
    engine: _Engine, new_id: str | None, old_id: str, name: str, start: bool, ready_s: float
) -> None:
    api = engine.api
    if new_id is not None:
        await engine.call(
            f"remove the new {name!r}", lambda: api.remove_container(new_id, force=True)
        )
    await engine.call(f"rename back {name!r}", lambda: api.rename(old_id, name))
    if start:
        await engine.call(f"start the original {name!r}", lambda: api.start(old_id))
        await _wait_ready(engine, old_id, ready_s)


def register(registry: ActionRegistry) -> None:
    """Add the docker.* actions to ``registry``."""
    registry.register(
        "docker.inspect", DockerInspectParams, "container state, health, restarts, image, command"
    )(run_inspect)
    registry.register("docker.logs", DockerLogsParams, "count and excerpt matching log lines")(
        run_logs
    )
    registry.register(
        "docker.restart", DockerRestartParams, "restart and wait until running and healthy"
    )(run_restart)
    registry.register(
        "docker.stats", DockerStatsParams, "CPU %, memory, PIDs, network and block I/O"
    )(run_stats)
    registry.register(
        "docker.recreate",
        DockerRecreateParams,
        "re-create with a changed command, env or devices (undoable)",
    )(run_recreate)
