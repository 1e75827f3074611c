"""OpenTelemetry traces: spans from a real run's events, OTLP export from a real daemon to a
real HTTP receiver, and the one-line degradation without the SDK."""

from __future__ import annotations

import http.server
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from structlog.testing import capture_logs

from orchestrator.tracing import SpanSink, trace_sinks
from tests.daemon_process import DaemonProcess
from tests.helpers import plan_from, run_plan, serving_http, sleep_step, stream
from tests.orchestrator.test_daemon import write_plan


def _spans_of(events: list[dict[str, Any]]) -> dict[str, ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sink = SpanSink(provider.get_tracer("test"))
    for event in events:
        sink.emit(event)
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_run_becomes_a_tree_of_spans(tmp_path: Path) -> None:
    failing = {"id": "boom", "agent": "cpu-agent", "action": "command"}
    plan = plan_from(
        [
            stream("ok", [sleep_step("nap", seconds=0.01)]),
            stream(
                "bad",
                [{**failing, "retries": 0, "with": {"argv": ["sh", "-c", "exit 3"]}}],
                rollback={"steps": [sleep_step("restore", seconds=0.01)]},
            ),
        ]
    )
    _, events = anyio.run(lambda: run_plan(plan, workdir=tmp_path))
    # A tool call as the LLM-agent driver will report it, inside `nap`.
    started = next(e for e in events if e["event"] == "step_started" and e["step"] == "nap")
    tool = {**started, "event": "tool_called", "tool": "file.read", "status": "ok"}
    events.insert(events.index(started) + 1, {**tool, "duration_s": 0.0, "seq": 10_000})
    spans = _spans_of(events)

    run = next(s for n, s in spans.items() if n.startswith("run "))
    assert run.parent is None and run.end_time is not None
    trace_id = run.context.trace_id
    assert all(s.context.trace_id == trace_id for s in spans.values())

    def parent(name: str) -> ReadableSpan:
        span = spans[name]
        assert span.parent is not None, name
        return next(s for s in spans.values() if s.context.span_id == span.parent.span_id)

    assert parent("stream ok") is run and parent("stream bad") is run
    assert parent("step nap").name == "stream ok"
    assert parent("step boom").name == "stream bad"
    assert parent("rollback").name == "stream bad"
    assert parent("step restore").name == "rollback"
    assert parent("tool file.read").name == "step nap"
    assert spans["step boom"].status.status_code is StatusCode.ERROR
    assert spans["step nap"].status.status_code is StatusCode.UNSET
    assert spans["step nap"].attributes is not None
    assert spans["step nap"].attributes["orchestrator.agent"] == "light-agent"
    nap = spans["step nap"]
    assert nap.start_time is not None and nap.end_time is not None
    assert nap.end_time >= nap.start_time


def test_no_endpoint_no_tracing() -> None:
    with capture_logs() as logs:
        assert trace_sinks({}) == []
    assert logs == []


def test_without_the_sdk_one_line_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if not installed
    with capture_logs() as logs:
        assert trace_sinks({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}) == []
    assert [entry["event"] for entry in logs] == ["tracing_unavailable"]
    assert "orchestrator[tracing]" in logs[0]["fix"]


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    with serving_http(handler) as port:
        yield port, received


def test_a_daemon_exports_its_runs_over_otlp(
    tmp_path: Path, receiver: tuple[int, list[tuple[str, bytes]]]
) -> None:
    port, received = receiver
    process = DaemonProcess(
        tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}"
    ).start()
    try:
        plan, _, go = write_plan(tmp_path)
        go.touch()
        run_id = process.cli("submit", str(plan)).stdout.strip()
        process.wait_for(run_id, {"succeeded"})
        assert process.stop() == 0  # a graceful exit flushes the spans
    finally:
        process.close()
    names: set[str] = set()
    for path, body in received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope in resource_spans.scope_spans:
                names.update(span.name for span in scope.spans)
    assert {"run daemon-test", "stream main", "step hold", "step quick"} <= names
    assert "tracing_enabled" in process.log_text()
