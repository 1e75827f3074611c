"""Optional OpenTelemetry traces of runs: a span per run, stream, step attempt, rollback and
tool call, built from the run's events (so they carry the events' own times).

Off unless the user sets the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); the OTLP exporter reads those and the other
``OTEL_*`` variables itself (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` picks gRPC, anything else
HTTP/protobuf). OpenTelemetry is not a dependency of the daemon: without the SDK and an
exporter installed (``pip install 'orchestrator[tracing]'``), :func:`trace_sinks` logs one
``tracing_unavailable`` line naming the fix and returns no sink.

Span tree::

    run <plan>                       run_started .. run_finished / run_suspended
      stream <id>                    stream_started .. stream_finished (gate verdict: an event)
        step <step>                  step_started .. step_finished (one span per attempt)
          tool <name>                tool_called (ends at the event; began duration_s before)
        rollback                     rollback_started .. rollback_finished / _abandoned
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from orchestrator.events import EventSink

__all__ = ["SpanSink", "trace_sinks"]

_log = structlog.get_logger("orchestrator.tracing")

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _ns(ts: Any) -> int | None:
    if not isinstance(ts, str):
        return None
    try:
        return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return None


def _attributes(event: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """``orchestrator.<name>`` attributes of the plain values ``event`` has."""
    found: dict[str, Any] = {}
    for name in names:
        value = event.get(name)
        if isinstance(value, str | bool | int | float):
            found[f"orchestrator.{name}"] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            found[f"orchestrator.{name}"] = list(value)
    return found


class SpanSink:
    """An EventSink that turns each run's events into spans (see module doc). Quick, never
    raises on odd input; spans still open when their run ends are ended with it."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._spans: dict[tuple[str, ...], Span] = {}

    def _start(
        self,
        key: tuple[str, ...],
        name: str,
        parent: tuple[str, ...] | None,
        event: Mapping[str, Any],
        attrs: dict[str, Any],
        start_ns: int | None = None,
    ) -> Span:
        from opentelemetry import trace

        context = None
        if parent is not None and parent in self._spans:
            context = trace.set_span_in_context(self._spans[parent])
        span = self._tracer.start_span(
            name,
            context=context,
            start_time=start_ns if start_ns is not None else _ns(event.get("ts")),
            attributes=attrs,
        )
        self._spans[key] = span
        return span

    def _end(self, key: tuple[str, ...], event: Mapping[str, Any], *, failed: bool) -> None:
        from opentelemetry.trace import Status, StatusCode

        span = self._spans.pop(key, None)
        if span is None:
            return
        if failed:
            span.set_status(Status(StatusCode.ERROR, str(event.get("reason") or "")[:500]))
        span.end(end_time=_ns(event.get("ts")))

    def emit(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        run = str(event.get("run_id") or "")
        stream = str(event.get("stream") or "")
        step = str(event.get("step") or "")
        attempt = str(event.get("attempt") or "1")
        failed = event.get("status") not in (None, "succeeded", "completed")
        if name == "run_started":
            attrs = _attributes(event, "run_id", "plan")
            self._start((run,), f"run {event.get('plan', '')}", None, event, attrs)
        elif name == "stream_started":
            attrs = _attributes(event, "run_id", "stream", "steps")
            self._start((run, stream), f"stream {stream}", (run,), event, attrs)
        elif name == "step_started":
            attrs = _attributes(
                event, "run_id", "stream", "step", "agent", "resource_class", "attempt",
                "locks", "waited_s", "phase",
            )  # fmt: skip
            parent = (run, stream, "rollback") if event.get("phase") else (run, stream)
            if parent not in self._spans:
                parent = (run, stream)
            self._start((run, stream, step, attempt), f"step {step}", parent, event, attrs)
        elif name == "step_finished":
            span = self._spans.get((run, stream, step, attempt))
            if span is not None:
                span.set_attributes(_attributes(event, "status", "exit_code", "duration_s"))
                usage = event.get("usage")
                if isinstance(usage, Mapping):
                    span.set_attributes(_attributes(usage, *map(str, usage)))
            self._end((run, stream, step, attempt), event, failed=failed)
        elif name == "tool_called":
            self._tool(event, (run, stream, step, attempt))
        elif name == "gate_evaluated" and (run, stream) in self._spans:
            self._spans[(run, stream)].add_event(
                "gate_evaluated",
                _attributes(event, "passed", "confidence", "threshold"),
                timestamp=_ns(event.get("ts")),
            )
        elif name == "rollback_started":
            attrs = _attributes(event, "reason", "budget_s")
            self._start((run, stream, "rollback"), "rollback", (run, stream), event, attrs)
        elif name in ("rollback_finished", "rollback_abandoned"):
            self._end((run, stream, "rollback"), event, failed=failed)
        elif name == "stream_finished":
            self._end_all(run, event, stream=stream)
            self._end((run, stream), event, failed=failed)
        elif name in ("run_finished", "run_suspended"):
            self._end_all(run, event)
            self._end((run,), event, failed=failed)

    def _tool(self, event: Mapping[str, Any], step: tuple[str, ...]) -> None:
        end = _ns(event.get("ts"))
        duration = event.get("duration_s")
        start = end
        if end is not None and isinstance(duration, int | float) and duration >= 0:
            start = end - int(duration * 1e9)
        key = (*step, "tool", str(event.get("seq") or ""))
        attrs = _attributes(event, "tool", "status", "agent", "duration_s")
        self._start(key, f"tool {event.get('tool', '')}", step, event, attrs, start)
        self._end(key, event, failed=event.get("status") not in (None, "ok"))

    def _end_all(self, run: str, event: Mapping[str, Any], stream: str | None = None) -> None:
        """End spans below a run (or one stream) that no event ended (a cancelled run)."""
        for key in [k for k in self._spans if k[0] == run and len(k) > (2 if stream else 1)]:
            if stream is None or key[1] == stream:
                self._end(key, event, failed=True)


def trace_sinks(environ: Mapping[str, str] = os.environ) -> list[EventSink]:
    """A :class:`SpanSink` exporting over OTLP when an endpoint is set and OpenTelemetry's
    SDK and exporter are importable; else no sink (one log line says why, if asked)."""
    if not any(environ.get(var) for var in _ENDPOINT_VARS):
        return []
    grpc = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() == "grpc"
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found, unused-ignore]
                OTLPSpanExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-grpc" if grpc else "'orchestrator[tracing]'"
        _log.warning(
            "tracing_unavailable",
            reason=f"OTEL_EXPORTER_OTLP_ENDPOINT is set but {exc.name or exc} is not installed",
            fix=f"pip install {package}, or unset OTEL_EXPORTER_OTLP_ENDPOINT",
        )
        return []
    provider = TracerProvider(resource=Resource.create({"service.name": "orchestrator"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # flushed at exit
    _log.info("tracing_enabled", protocol="grpc" if grpc else "http/protobuf")
    return [SpanSink(provider.get_tracer("orchestrator"))]
