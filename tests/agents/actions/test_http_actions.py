"""``http.probe`` against a real HTTP server (stdlib, in a thread) started by the test."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from agents.actions.http import HttpProbeParams, run_probe
from agents.base import ActionResult
from foundation.errors import ActionFailed
from tests.agents.actions.conftest import MakeCtx, assert_no_secret
from tests.ports import free_port

TOKEN = "Bearer tok-5e1f9a"


class Service(ThreadingHTTPServer):
    """/health: 200; /down: 503; /slow: answers after ``release`` (or 10 s); /flaky:
    200 and 503 in turn; /auth: 200 with the right Authorization header, else 401."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()
        self.flips = itertools.cycle([200, 503])

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Service
    protocol_version = "HTTP/1.1"  # keep-alive, as real services do
    disable_nagle_algorithm = True  # headers and body are separate writes

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/slow":
            self.server.release.wait(10)
        status = {
            "/health": 200,
            "/down": 503,
            "/slow": 200,
            "/flaky": next(self.server.flips),
            "/auth": 200 if self.headers.get("Authorization") == TOKEN else 401,
        }.get(path, 404)
        body = b'{"status": "ok"}' if status == 200 else f'{{"error": {status}}}'.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up on /slow: nothing to answer
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[Service]:
    server = Service()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


async def probe(make_ctx: MakeCtx, url: str, **params: Any) -> ActionResult:
    env = params.pop("env", {})
    return await run_probe(make_ctx(**env), HttpProbeParams(url=url, **params))


async def test_healthy_endpoint(make_ctx: MakeCtx, service: Service) -> None:
    result = await probe(make_ctx, f"{service.base}/health", count=4)
    assert result.ok, result.summary
    m = result.metrics
    assert (m["http.status"], m["http.ok_ratio"], m["http.error_rate"]) == (200, 1, 0)
    assert m["http.timeouts"] == 0
    assert 0 < float(m["http.latency_ms.p50"]) <= float(m["http.latency_ms.p95"]) < 1000
    [evidence] = result.evidence
    assert evidence.source == "http" and evidence.detail["statuses"] == {"200": 4}
    assert '{"status": "ok"}' in evidence.excerpt and evidence.sha256
    assert result.summary.startswith(f"GET {service.base}/health: 4/4 ok (200 x4)")


async def test_unavailable_endpoint(make_ctx: MakeCtx, service: Service) -> None:
    result = await probe(make_ctx, f"{service.base}/down", count=3)
    assert not result.ok and "needs an ok ratio of at least 1" in result.summary
    m = result.metrics
    assert (m["http.status"], m["http.ok_ratio"], m["http.error_rate"]) == (503, 0, 1)
    assert result.evidence[0].detail["statuses"] == {"503": 3}
    assert '{"error": 503}' in result.evidence[0].excerpt
    # A 503 is what a "service is down" check expects.
    assert (await probe(make_ctx, f"{service.base}/down", count=1, ok_status=[503])).ok


async def test_half_failing_endpoint_with_a_ratio(make_ctx: MakeCtx, service: Service) -> None:
    result = await probe(make_ctx, f"{service.base}/flaky", count=6, min_ok_ratio=0.5)
    assert result.ok, result.summary
    assert result.metrics["http.ok_ratio"] == 0.5 and result.metrics["http.error_rate"] == 0.5
    assert result.evidence[0].detail["statuses"] == {"200": 3, "503": 3}


async def test_slow_endpoint_times_out(make_ctx: MakeCtx, service: Service) -> None:
    result = await probe(make_ctx, f"{service.base}/slow", count=2, timeout_s=0.3)
    assert not result.ok
    m = result.metrics
    assert (m["http.status"], m["http.ok_ratio"], m["http.error_rate"]) == (0, 0, 1)
    assert m["http.timeouts"] == 2 and "http.latency_ms.p50" not in m
    assert result.evidence[0].detail["statuses"] == {"timeout": 2}
    assert "no response within 0.3s" in result.evidence[0].excerpt


async def test_prefixes_keep_services_apart(make_ctx: MakeCtx, service: Service) -> None:
    voice = await probe(make_ctx, f"{service.base}/health", count=2, metric_prefix="voice.http")
    chat = await probe(make_ctx, f"{service.base}/down", count=2, metric_prefix="chat.http")
    assert (
        "voice.http.latency_ms.p50" in voice.metrics and voice.metrics["voice.http.status"] == 200
    )
    assert chat.metrics["chat.http.error_rate"] == 1 and not any(
        name.startswith("http.") for name in {**voice.metrics, **chat.metrics}
    )


async def test_nothing_listening(make_ctx: MakeCtx) -> None:
    result = await probe(make_ctx, f"http://127.0.0.1:{free_port()}/health", count=2)
    assert not result.ok
    assert result.metrics["http.error_rate"] == 1 and result.metrics["http.status"] == 0
    assert result.evidence[0].detail["statuses"] == {"error": 2}
    assert "ConnectError" in result.evidence[0].excerpt


async def test_credentials_are_never_shown(make_ctx: MakeCtx, service: Service) -> None:
    port = service.server_address[1]
    url = f"http://ops:pw-7d2c11@127.0.0.1:{port}/health?token=qs-0b9e44&x=1"
    result = await probe(make_ctx, url, count=1)
    assert result.ok, result.summary
    shown = f"http://ops:***@127.0.0.1:{port}/health?token=***&x=1"
    assert result.evidence[0].detail["url"] == shown and shown in result.summary
    assert_no_secret(result, "pw-7d2c11", "qs-0b9e44")


async def test_header_values_come_from_the_environment(make_ctx: MakeCtx, service: Service) -> None:
    url = f"{service.base}/auth"
    env = {"API_TOKEN": TOKEN}
    result = await probe(make_ctx, url, headers_env={"Authorization": "API_TOKEN"}, env=env)
    assert result.ok, result.summary  # the header reached the server
    assert result.evidence[0].detail["headers"] == ["Authorization"]
    assert_no_secret(result, TOKEN)
    refused = await probe(make_ctx, url, count=1)
    assert not refused.ok and refused.metrics["http.status"] == 401
    with pytest.raises(ActionFailed, match="variable 'API_TOKEN' is not set"):
        await probe(make_ctx, url, headers_env={"Authorization": "API_TOKEN"})


def test_params_are_checked() -> None:
    for bad in (
        {"url": "ftp://example.com/"},
        {"url": "http://example.com/", "ok_status": [700]},
        {"url": "http://example.com/", "count": 0},
        {"url": "http://example.com/", "timeout_s": 0},
        {"url": "http://example.com/", "surprise": True},
    ):
        with pytest.raises(ValidationError):
            HttpProbeParams.model_validate(bad)
    assert (
        HttpProbeParams.model_validate({"url": "http://h/", "timeout_s": "250ms"}).timeout_s == 0.25
    )
