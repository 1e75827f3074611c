"""``/metrics``: a real daemon running a real plan, scraped over HTTP and parsed with
prometheus-client's own parser."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.web.locks_page import render_locks_page
from orchestrator.web.metrics import DaemonMetrics
from tests.daemon_process import DaemonProcess
from tests.orchestrator.web.test_http import _get

PLAN = """
version: 1
plan: metrics-test
caps: {{cpu: 1, light: null}}
resources: [redis]
agents:
  worker: {{class: cpu, can: [command, sleep]}}
  helper: {{class: light, can: [command, sleep]}}
streams:
  - id: gated
    team: [worker]
    gate: {{threshold: 1.0, criteria: [probe.ok == 1]}}
    steps:
      - id: hold
        agent: worker
        action: command
        locks: [redis]
        with:
          parse_metrics: true
          argv: [sh, -c, "touch {held}; while [ ! -f {go} ]; do sleep 0.05; done; echo probe.ok=1"]
  - id: waiter
    team: [helper]
    steps:
      - {{id: want, agent: helper, action: sleep, locks: [redis], with: {{seconds: 0.01}}}}
  - id: broken
    team: [helper]
    rollback:
      steps:
        - id: undo-it
          agent: helper
          action: command
          with: {{argv: [sh, -c, "while [ ! -f {go} ]; do sleep 0.05; done"]}}
    steps:
      - {{id: fine, agent: helper, action: sleep, with: {{seconds: 0.01}}}}
      - {{id: boom, agent: helper, action: command, retries: 0, with: {{argv: [sh, -c, "exit 3"]}}}}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _until(scrape: Callable[[], Samples], holds: Callable[[Samples], bool]) -> Samples:
    deadline = time.monotonic() + 30
    while True:
        samples = scrape()
        if holds(samples):
            return samples
        assert time.monotonic() < deadline, f"never held; last scrape: {samples}"
        time.sleep(0.05)


def test_metrics_of_a_real_run(web: tuple[DaemonProcess, int, str], tmp_path: Path) -> None:
    process, port, token = web
    assert _get(port, "/metrics").status == 401  # the dashboard's token guards it too
    held, go = tmp_path / "held", tmp_path / "go"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(held=held, go=go))

    def scrape() -> Samples:
        reply = _get(port, "/metrics", {"Authorization": f"Bearer {token}"})
        assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
        return _parse(reply.body)

    run_id = process.cli("submit", str(plan)).stdout.strip()
    # While `hold` has the redis lock and the only cpu slot, `want` queues for redis.
    live = _until(
        scrape,
        lambda s: held.exists() and _value(s, "orchestrator_lock_waiters", resource="redis") == 1,
    )
    assert _value(live, "orchestrator_runs_active") == 1
    assert _value(live, "orchestrator_class_slots_in_use", resource_class="cpu") == 1
    assert _value(live, "orchestrator_class_slots_cap", resource_class="cpu") == 1
    assert ("orchestrator_class_slots_cap", frozenset({("resource_class", "light")})) not in live

    go.touch()
    watched = process.cli("watch", run_id, "--json")
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert watched.returncode == 1 and events[-1]["event"] == "run_finished"  # `broken` failed
    done = scrape()

    assert _value(done, "orchestrator_runs_active") == 0
    assert _value(done, "orchestrator_lock_waiters", resource="redis") == 0
    assert not _value(done, "orchestrator_class_slots_in_use", resource_class="cpu")
    finished = [e for e in events if e["event"] == "step_finished"]
    for status, cls in {(e["status"], e["resource_class"]) for e in finished}:
        expected = sum(1 for e in finished if (e["status"], e["resource_class"]) == (status, cls))
        got = _value(done, "orchestrator_steps_total", status=status, resource_class=cls)
        assert got == expected, (status, cls)
    assert _total(done, "orchestrator_steps_total") == len(finished)
    assert _value(done, "orchestrator_steps_total", status="failed", resource_class="light") == 1
    started = [e for e in events if e["event"] == "step_started"]
    assert _value(done, "orchestrator_step_duration_seconds_count", resource_class="cpu") == sum(
        1 for e in started if e["resource_class"] == "cpu"
    )
    assert _total(done, "orchestrator_step_wait_seconds_count") == len(started)
    # `want` waited for redis at least as long as the wait recorded in its event.
    want = next(e for e in started if e["step"] == "want")
    assert _total(done, "orchestrator_step_wait_seconds_sum") >= want["waited_s"] > 0
    assert _value(done, "orchestrator_gate_evaluations_total", verdict="passed") == 1
    assert _value(done, "orchestrator_rollbacks_total", status="completed") == 1
    assert token not in process.log_text()


def test_agent_tokens_come_from_step_usage() -> None:
    metrics = DaemonMetrics()
    usage = {"input_tokens": 1200, "output_tokens": 340, "requests": 3}
    step = {"event": "step_finished", "agent": "config-writer", "resource_class": "io"}
    metrics.emit({**step, "status": "succeeded", "duration_s": 2.5, "usage": usage})
    metrics.emit({**step, "status": "failed", "duration_s": 1.0, "usage": {"input_tokens": 800}})
    metrics.emit({**step, "status": "failed", "usage": "garbage", "duration_s": "x"})
    samples = _parse(metrics.exposition().decode())
    tokens = "orchestrator_agent_tokens_total"
    assert _value(samples, tokens, agent="config-writer", kind="input") == 2000
    assert _value(samples, tokens, agent="config-writer", kind="output") == 340
    assert {dict(k)["kind"] for n, k in samples if n == tokens} == {"input", "output"}
    assert _value(samples, "orchestrator_steps_total", status="failed", resource_class="io") == 2
    assert _value(samples, "orchestrator_step_duration_seconds_count", resource_class="io") == 2
    assert metrics.tokens() == {"config-writer": {"input": 2000, "output": 340}}
    agents = {"agents": [{"agent": "config-writer", "run_id": "r1", "state": "idle"}]}
    page = render_locks_page({}, agents, metrics.tokens())
    assert "<th>input tokens</th><th>output tokens</th>" in page
    assert "<td>2000</td><td>340</td>" in page


def test_each_daemon_has_its_own_registry() -> None:
    first, second = DaemonMetrics(), DaemonMetrics()
    first.emit({"event": "gate_evaluated", "passed": False})
    assert (
        _value(
            _parse(first.exposition().decode()),
            "orchestrator_gate_evaluations_total",
            verdict="failed",
        )
        == 1
    )
    assert (
        _value(
            _parse(second.exposition().decode()),
            "orchestrator_gate_evaluations_total",
            verdict="failed",
        )
        is None
    )
