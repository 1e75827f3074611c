"""``analyze`` and ``evidence`` over the history that ``orchestrator run`` records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def orchestrator(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCH_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )


def test_history_feeds_analyze_and_evidence_is_listed(tmp_path: Path) -> None:
    before = json.loads(
        orchestrator("analyze", "examples/phase2.yaml", "--json", state=tmp_path).stdout
    )
    assert {s["runs"] for s in before["streams"]} == {0}
    redis_before = next(s for s in before["streams"] if s["stream"] == "redis-auth")
    assert redis_before["success_probability"] == 0.95  # the plan's own estimate, with no history
    done = orchestrator("run", "examples/phase2.yaml", "--plain", state=tmp_path)
    assert done.returncode == 0, done.stderr
    after = json.loads(
        orchestrator("analyze", "examples/phase2.yaml", "--json", state=tmp_path).stdout
    )
    redis_after = next(s for s in after["streams"] if s["stream"] == "redis-auth")
    assert redis_after["runs"] == 1
    assert (
        abs(redis_after["success_probability"] - (0.95 * 4 + 1) / 5) < 1e-12
    )  # Beta posterior after one success
    assert after["makespan_s"] > 0 and after["critical_path"]

    run_id = next((tmp_path / "runs").iterdir()).name
    listed = json.loads(
        orchestrator("evidence", run_id, "--stream", "redis-auth", "--json", state=tmp_path).stdout
    )
    provided = {p for item in listed["evidence"] for p in item["provides"]}
    assert {"redis-cli-auth", "service-logs", "docker-logs-auth"} <= provided
    assert all(item["verified"] for item in listed["evidence"])
    missing = orchestrator("evidence", "no-such-run", state=tmp_path)
    assert missing.returncode == 2 and "no-such-run" in missing.stderr
