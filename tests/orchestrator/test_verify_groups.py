"""``verify-log`` compares caps, locks and fences only between runs that shared a coordinator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.verify import verify_events
from tests.test_cli_run import orchestrator, write_plan

LOCKED = """
  - id: s
    team: [worker]
    steps:
      - id: a
        agent: worker
        action: sleep
        with: {seconds: 0}
        locks: [redis]
      - id: b
        agent: worker
        action: sleep
        with: {seconds: 0}
        locks: [redis]
        needs: [a]
"""


def test_independent_runs_files_verify_together(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "p.yaml", LOCKED)
    files = []
    for n in range(2):
        events = tmp_path / f"run{n}.jsonl"
        done = orchestrator("run", str(plan), "--plain", "--events", str(events), state=tmp_path)
        assert done.returncode == 0, done.stderr
        files.append(str(events))
    started = json.loads(Path(files[0]).read_text().splitlines()[0])
    assert started["coordinator"] == {"kind": "in-process"}
    verified = orchestrator("verify-log", *files, state=tmp_path)
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith("OK: ") and "2 run(s)" in verified.stdout


def _run(run_id: str, namespace: str, t0: int, fence: int) -> list[dict[str, Any]]:
    base = {"run_id": run_id, "stream": "s", "step": "a", "resource_class": "cpu", "attempt": 1}
    coordinator = {"kind": "redis", "where": "redis://:***@h:6379/0", "namespace": namespace}
    return [
        {
            "ts": f"2026-01-01T00:00:0{t0}.000001Z",
            "event": "run_started",
            "run_id": run_id,
            "caps": {"cpu": 1},
            "coordinator": coordinator,
        },
        {
            "ts": f"2026-01-01T00:00:0{t0}.000002Z",
            "event": "step_started",
            "locks": ["db"],
            "fences": {"db": fence},
            **base,
        },
        {"ts": f"2026-01-01T00:00:0{t0 + 2}.000001Z", "event": "step_finished", **base},
    ]


def test_runs_sharing_a_redis_namespace_are_checked_together() -> None:
    overlapping = [_run("r1", "orch", 1, 5), _run("r2", "orch", 2, 5)]
    report = verify_events(overlapping)
    assert any("lock 'db' already held by r1/s/a" in v for v in report.violations)
    assert any("fencing token 5 for 'db' does not exceed 5" in v for v in report.violations)
    assert any("class 'cpu' ran 2 steps at once, cap 1" in v for v in report.violations)


def test_runs_of_different_namespaces_are_independent() -> None:
    report = verify_events([_run("r1", "orch", 1, 5), _run("r2", "other", 2, 1)])
    assert report.ok, report.render()
    assert report.runs == 2 and report.steps == 2 and report.peak == {"cpu": 1}
