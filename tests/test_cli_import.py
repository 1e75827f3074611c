"""``orchestrator import`` on the users' own Markdown phase plan, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "streams" / "data" / "000_ab24b73426072cb1.txt"


def test_seed_imports_validates_and_reports_what_it_left_out(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "import", str(SEED), "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "4 streams, 10 agents, 20 steps" in done.stderr
    assert f"{SEED}:19:" in done.stderr  # an unmapped line, named by its number
    plan = yaml.safe_load(out.read_text())
    assert [s["priority"] for s in plan["streams"]] == ["critical", "high", "medium", "medium"]
    checked = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
