"""Prometheus metrics of one daemon, served at ``/metrics`` behind the dashboard's token.

Counters and histograms are fed by the daemon's event pipeline: :class:`DaemonMetrics` is an
:class:`~orchestrator.events.EventSink` given to every run the daemon starts. Gauges are read
from the coordinator and the run manager at scrape time, so they are never stale. Every
metric lives in the daemon's own ``CollectorRegistry`` (never prometheus-client's global
one), so two daemons in one process, or one per test, never share a number.

Metrics::

    orchestrator_runs_active                                   gauge
    orchestrator_steps_total{status,resource_class}            counter (step_finished/skipped)
    orchestrator_step_duration_seconds{resource_class}         histogram (service time)
    orchestrator_step_wait_seconds{resource_class}             histogram (queued until granted)
    orchestrator_class_slots_in_use{resource_class}            gauge
    orchestrator_class_slots_cap{resource_class}               gauge (absent when unlimited)
    orchestrator_lock_waiters{resource}                        gauge
    orchestrator_gate_evaluations_total{verdict}               counter (passed|failed)
    orchestrator_rollbacks_total{status}                       counter (rollback_finished)
    orchestrator_agent_tokens_total{agent,kind}                counter (step_finished.usage)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from foundation.errors import OrchestratorError
from orchestrator.coordination.base import CoordinationSnapshot
from orchestrator.token_usage import tokens_by_kind

if TYPE_CHECKING:
    from orchestrator.daemon import Daemon

__all__ = ["DaemonMetrics", "metrics_route"]

_log = structlog.get_logger("orchestrator.web")

#: Steps run from milliseconds (sleep, state.*) to an hour (a migration): buckets span both.
_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
#: A scrape waits at most this long for the coordinator (Redis) before answering without it.
SNAPSHOT_TIMEOUT_S = 5.0


def _label(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) and value else default


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


class DaemonMetrics:
    """The daemon's metrics in a registry of their own (see module doc)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs_active = Gauge(
            "orchestrator_runs_active", "Runs the daemon is executing now", registry=r
        )
        self.steps = Counter(
            "orchestrator_steps",
            "Step attempts ended, by final status and resource class",
            ["status", "resource_class"],
            registry=r,
        )
        self.step_duration = Histogram(
            "orchestrator_step_duration_seconds",
            "Service time of step attempts that started (seconds)",
            ["resource_class"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.step_wait = Histogram(
            "orchestrator_step_wait_seconds",
            "Time step attempts waited for their class slot and locks (seconds)",
            ["resource_class"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.slots_in_use = Gauge(
            "orchestrator_class_slots_in_use",
            "Slots of each resource class held now",
            ["resource_class"],
            registry=r,
        )
        self.slots_cap = Gauge(
            "orchestrator_class_slots_cap",
            "Concurrency cap of each capped resource class in the active runs' plans",
            ["resource_class"],
            registry=r,
        )
        self.lock_waiters = Gauge(
            "orchestrator_lock_waiters",
            "Steps queued for each lockable resource now",
            ["resource"],
            registry=r,
        )
        self.gates = Counter(
            "orchestrator_gate_evaluations",
            "Success gates evaluated, by verdict",
            ["verdict"],
            registry=r,
        )
        self.rollbacks = Counter(
            "orchestrator_rollbacks",
            "Stream rollbacks finished, by status (completed or incomplete)",
            ["status"],
            registry=r,
        )
        self.agent_tokens = Counter(
            "orchestrator_agent_tokens",
            "Model tokens used by agents, by kind (input, output, ...)",
            ["agent", "kind"],
            registry=r,
        )

    # -- counters: fed by events ----------------------------------------------------------

    def emit(self, event: Mapping[str, Any]) -> None:
        """An EventSink: count what ``event`` reports. Quick, and never raises on odd input."""
        name = event.get("event")
        cls = _label(event.get("resource_class"), "none")
        if name == "step_started":
            waited = _seconds(event.get("waited_s"))
            if waited is not None:
                self.step_wait.labels(cls).observe(waited)
        elif name == "step_finished":
            self.steps.labels(_label(event.get("status"), "unknown"), cls).inc()
            duration = _seconds(event.get("duration_s"))
            if duration is not None and event.get("started") is not False:
                self.step_duration.labels(cls).observe(duration)
            self._count_usage(_label(event.get("agent"), "unknown"), event.get("usage"))
        elif name == "step_skipped":
            self.steps.labels("skipped", cls).inc()
        elif name == "gate_evaluated":
            self.gates.labels("passed" if event.get("passed") else "failed").inc()
        elif name == "rollback_finished":
            self.rollbacks.labels(_label(event.get("status"), "unknown")).inc()

    def _count_usage(self, agent: str, usage: Any) -> None:
        """``usage: {input_tokens: N, output_tokens: M, requests: K}``: each ``*_tokens``
        figure counts under its kind (``input``, ``output``, ``cache_read``, ...)."""
        for kind, n in tokens_by_kind(usage).items():
            self.agent_tokens.labels(agent, kind).inc(n)

    def tokens(self) -> dict[str, dict[str, int]]:
        """Tokens counted so far, per agent and kind."""
        found: dict[str, dict[str, int]] = {}
        for family in self.agent_tokens.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    agent, kind = sample.labels["agent"], sample.labels["kind"]
                    found.setdefault(agent, {})[kind] = int(sample.value)
        return found

    # -- gauges: read at scrape time -------------------------------------------------------

    def observe(
        self,
        snapshot: CoordinationSnapshot | None,
        caps: Mapping[str, int | None],
        active_runs: int,
    ) -> None:
        """Set the gauges from the state now (``snapshot`` None: the coordinator did not
        answer; its gauges are left out rather than shown stale)."""
        self.runs_active.set(active_runs)
        self.slots_in_use.clear()
        self.slots_cap.clear()
        self.lock_waiters.clear()
        for cls, cap in caps.items():
            if cap is not None:
                self.slots_cap.labels(cls).set(cap)
        if snapshot is None:
            return
        for cls in set(caps) | set(snapshot.class_usage):
            self.slots_in_use.labels(cls).set(snapshot.class_usage.get(cls, 0))
        waiters: dict[str, int] = dict.fromkeys(snapshot.fences, 0)
        for holder in snapshot.holders:
            for lock in holder.locks:
                waiters.setdefault(lock, 0)
        for waiter in snapshot.waiters:
            for lock in waiter.locks:
                waiters[lock] = waiters.get(lock, 0) + 1
        for lock, count in waiters.items():
            self.lock_waiters.labels(lock).set(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def metrics_route(daemon: Daemon, metrics: DaemonMetrics) -> Route:
    """``GET /metrics``: gauges refreshed from ``daemon``, then every metric as text."""

    async def scrape(request: Request) -> Response:
        caps: dict[str, int | None] = {}
        for active in daemon.runs.active.values():
            caps.update(active.plan.caps)
        snapshot: CoordinationSnapshot | None = None
        try:
            with anyio.move_on_after(SNAPSHOT_TIMEOUT_S):
                snapshot = await daemon.coordinator.snapshot()
        except OrchestratorError as exc:  # Redis down: the counters are still worth serving
            _log.warning("metrics_snapshot_failed", error=str(exc))
        else:
            if snapshot is None:
                _log.warning("metrics_snapshot_timed_out", timeout_s=SNAPSHOT_TIMEOUT_S)
        metrics.observe(snapshot, caps, len(daemon.runs.active))
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape)
