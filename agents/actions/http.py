"""``http.probe``: GET (or HEAD) a health URL a number of times and measure what came back.

httpx, because it runs on anyio (its cancellation and deadlines are anyio's, and it works on
both backends) and is typed; the client ignores the daemon's proxy variables
(``trust_env=False``): a probe reaches the URL it names. Every request is under
``anyio.fail_after(timeout_s)`` as well as httpx's own timeouts; a timeout, a refused
connection or a 5xx is a counted outcome, not a crash. Credentials in the URL (userinfo or
query keys such as ``token``) are shown as ``***``; header values are never shown, and
``headers_env`` takes them from the step's environment so plans need not hold secrets.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from typing import Literal
from urllib.parse import urlsplit

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.actions._stats import percentile
from agents.base import ActionContext, ActionResult, Evidence
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import redact_url, scrub, url_secrets
from streams.durations import Duration

__all__ = ["HttpProbeParams", "register", "run_probe"]

#: Bytes of each response read at most (a health body is small; a huge one is not read on).
_READ_CAP = 1024 * 1024


class HttpProbeParams(BaseModel):
    """Parameters of ``http.probe``.

    ``count`` requests of ``url``, each within ``timeout_s``, ``interval_s`` apart. A
    response is ok when its status is in ``ok_status`` (default: any 2xx); the step passes
    when the ok share reaches ``min_ok_ratio``. Metrics are named ``<metric_prefix>.status``
    etc., so ``voice.http`` and ``chat.http`` can be probed in one plan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=4096)
    count: int = Field(default=5, ge=1, le=1000)
    timeout_s: Duration = Field(default=5.0, gt=0, le=300)
    interval_s: Duration = Field(default=0.0, le=60)
    method: Literal["GET", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        max_length=50,
        description="Header name -> variable of the step's environment holding its value.",
    )
    ok_status: list[int] = Field(default_factory=list, max_length=100)
    min_ok_ratio: float = Field(default=1.0, ge=0, le=1)
    follow_redirects: bool = False
    verify_tls: bool = True
    body_limit: int = Field(default=2048, ge=0, le=65536, description="Body bytes kept.")
    metric_prefix: str = Field(default="http", pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # Messages here never repeat the URL: it may carry credentials.
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError("not a valid URL (write http://host:8006/health)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("needs an http:// or https:// URL with a host")
        return url

    @field_validator("ok_status")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        if any(not 100 <= status <= 599 for status in statuses):
            raise ValueError("HTTP statuses are 100..599")
        return statuses


def _redact(url: str) -> tuple[str, list[str]]:
    """``url`` with its password and secret query values as ``***``, and those secrets."""
    return redact_url(url), url_secrets(url)


def _headers(ctx: ActionContext, params: HttpProbeParams) -> tuple[dict[str, str], list[str]]:
    headers = dict(params.headers)
    secrets = list(params.headers.values())
    for name, variable in params.headers_env.items():
        try:
            headers[name] = ctx.env[variable]
        except KeyError:
            raise ActionFailed(
                "http.probe",
                f"headers_env {name!r}: variable {variable!r} is not set in the step's "
                "environment (fix: export it where the daemon runs and list it in the "
                "daemon's pass_env setting, ORCH_PASS_ENV)",
                retryable=False,  # the environment will not change before a retry
            ) from None
        secrets.append(headers[name])
    return headers, secrets


async def run_probe(ctx: ActionContext, params: HttpProbeParams) -> ActionResult:
    """Request ``url`` ``count`` times; never raises for what the server (or its absence) did.

    Metrics (under ``metric_prefix``, default ``http``): ``.status`` (of the last request;
    0 when it got no response), ``.ok_ratio``, ``.error_rate`` (timeouts, connection errors
    and 5xx, over all requests), ``.timeouts``, ``.latency_ms.p50``/``.p95`` (over the
    responses received; absent when none was).
    """
    import httpx  # here: validating a plan must not pay for importing the client

    shown, secrets = _redact(params.url)
    headers, header_secrets = _headers(ctx, params)
    secrets += header_secrets
    ok_statuses = set(params.ok_status) or set(range(200, 300))
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    lines: list[str] = []
    good = errors = timeouts = last_status = 0
    body, body_hash, body_bytes = b"", hashlib.sha256(), 0
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(params.timeout_s),
        follow_redirects=params.follow_redirects,
        verify=params.verify_tls,
        trust_env=False,
    ) as client:
        for index in range(params.count):
            if index and params.interval_s:
                await anyio.sleep(params.interval_s)
            started = time.perf_counter()
            try:
                with anyio.fail_after(params.timeout_s):
                    async with client.stream(params.method, params.url, headers=headers) as reply:
                        kept, digest, total = bytearray(), hashlib.sha256(), 0
                        async for chunk in reply.aiter_bytes():
                            digest.update(chunk)
                            total += len(chunk)
                            kept += chunk[: max(0, params.body_limit - len(kept))]
                            if total >= _READ_CAP:
                                break
            except (TimeoutError, httpx.TimeoutException):
                errors, timeouts, last_status = errors + 1, timeouts + 1, 0
                statuses["timeout"] += 1
                lines.append(f"{index + 1}: no response within {params.timeout_s:g}s")
            except httpx.HTTPError as exc:
                errors, last_status = errors + 1, 0
                statuses["error"] += 1
                reason = scrub(str(exc) or type(exc).__name__, secrets)
                lines.append(f"{index + 1}: {type(exc).__name__}: {reason[:300]}")
            else:
                elapsed_ms = (time.perf_counter() - started) * 1000
                latencies.append(elapsed_ms)
                last_status = reply.status_code
                statuses[str(last_status)] += 1
                good += last_status in ok_statuses
                errors += last_status >= 500
                body, body_hash, body_bytes = bytes(kept), digest, total
                lines.append(f"{index + 1}: {last_status} in {elapsed_ms:.1f} ms, {total} bytes")

    prefix = params.metric_prefix
    metrics: dict[str, float] = {
        f"{prefix}.status": float(last_status),
        f"{prefix}.ok_ratio": good / params.count,
        f"{prefix}.error_rate": errors / params.count,
        f"{prefix}.timeouts": float(timeouts),
    }
    if latencies:
        metrics[f"{prefix}.latency_ms.p50"] = percentile(latencies, 0.50)
        metrics[f"{prefix}.latency_ms.p95"] = percentile(latencies, 0.95)
    ok = metrics[f"{prefix}.ok_ratio"] >= params.min_ok_ratio
    seen = ", ".join(f"{status} x{n}" for status, n in sorted(statuses.items()))
    summary = f"{params.method} {shown}: {good}/{params.count} ok ({seen})"
    if latencies:
        summary += f", p50 {metrics[f'{prefix}.latency_ms.p50']:.1f} ms"
    if not ok:
        summary += f"; needs an ok ratio of at least {params.min_ok_ratio:g}"
    text = scrub(body.decode("utf-8", "replace"), secrets)
    excerpt = "\n".join(lines) + (
        f"\n--- last body ({body_bytes} bytes) ---\n{text}" if text else ""
    )
    detail = {
        "url": shown,
        "method": params.method,
        "count": params.count,
        "statuses": dict(statuses),
        "ok_status": sorted(ok_statuses) if params.ok_status else "2xx",
        "timeout_s": params.timeout_s,
        "headers": sorted(headers),  # names only: values may be credentials
    }
    evidence = Evidence(
        check=f"{params.method} {shown} x{params.count}",
        source="http",
        detail=detail,
        excerpt=excerpt,
        sha256=body_hash.hexdigest() if latencies else None,
        metrics=dict(metrics),
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=ok,
        summary=summary,
        output=excerpt,
        metrics=metrics,
        evidence=(evidence,),
        details=detail,
    )


def register(registry: ActionRegistry) -> None:
    """Add ``http.probe`` to ``registry``."""
    registry.register("http.probe", HttpProbeParams, "GET a health URL N times")(run_probe)
