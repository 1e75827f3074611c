"""Docker engine actions: ``docker.inspect``, ``docker.logs``, ``docker.restart``,
``docker.stats`` and ``docker.recreate``.

They talk to the engine with the Docker SDK over ``base_url`` (default ``$DOCKER_HOST`` from
the step's environment, then the daemon's, else ``unix:///var/run/docker.sock``). The SDK
blocks, so every engine call runs in a worker thread under a deadline of ``timeout_s``
(waits for a container to come up have their own ``ready_timeout_s``).

Metrics are named ``<prefix>.<what>`` with the prefix ``docker.<container>`` unless
``metric_prefix`` says otherwise. Secrets never reach evidence, summaries or errors:
values of environment variables named like secrets (``REDIS_PASSWORD``, ``API_TOKEN``,
``REDISCLI_AUTH``: :func:`foundation.secrets.is_secret_name`), the value after flags
such as ``--requirepass``, and passwords in URLs are shown as ``***`` (see
:func:`mask_command` and :func:`mask_text`), and those values are scrubbed from log lines
too. Only the UndoRecord of ``docker.recreate`` holds them, since it
must re-create the original exactly: treat undo parameters as secret.

Engine failures (unreachable, no such container, a call past its deadline, a refused
request) raise :class:`~foundation.errors.ActionFailed` naming the engine and the fix;
checks that do not hold (not running, too few matching log lines) return ``ok=False``.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from agents.actions._docker_engine import (
    _close_stream,
    _digest,
    _DockerParams,
    _engine,
    _inspect,
    _ready,
    _result,
    _state,
    _state_metrics,
    _wait_ready,
)
from agents.actions._docker_recreate import DeviceRequest, DockerRecreateParams, run_recreate
from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from foundation.secrets import mask_command, mask_text
from streams.durations import Duration, parse_duration

__all__ = [
    "DeviceRequest",
    "DockerInspectParams",
    "DockerLogsParams",
    "DockerRecreateParams",
    "DockerRestartParams",
    "DockerStatsParams",
    "container_resources",
    "mask_command",
    "mask_text",
    "register",
    "run_inspect",
    "run_logs",
    "run_recreate",
    "run_restart",
    "run_stats",
]


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


def container_resources(params: Any) -> list[str]:
    """The lock one call touches: ``docker:<container>``."""
    return [f"docker:{params.container}"]


def register(registry: ActionRegistry) -> None:
    """Add the docker.* actions to ``registry``."""
    res = container_resources
    registry.register(
        "docker.inspect",
        DockerInspectParams,
        "container state, health, restarts, image, command",
        res,
    )(run_inspect)
    registry.register("docker.logs", DockerLogsParams, "count and excerpt matching log lines", res)(
        run_logs
    )
    registry.register(
        "docker.restart", DockerRestartParams, "restart and wait until running and healthy", res
    )(run_restart)
    registry.register(
        "docker.stats", DockerStatsParams, "CPU %, memory, PIDs, network and block I/O", res
    )(run_stats)
    registry.register(
        "docker.recreate",
        DockerRecreateParams,
        "re-create with a changed command, env or devices (undoable)",
        res,
    )(run_recreate)
