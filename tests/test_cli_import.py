"""``orchestrator import`` on the users' own Markdown phase plans, as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "tests" / "streams" / "data" / "000_ab24b73426072cb1.txt"
CORPUS = ROOT.parent / "shared" / "corpus"
EXAMPLE = ROOT / "examples" / "markdown" / "release-plan.md"


def _orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_seed_imports_and_validate_names_each_driver_to_fill_in(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    done = _orchestrator("import", str(SEED), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "4 streams, 10 agents, 20 steps" in done.stderr
    assert f"{SEED}:19:" in done.stderr  # an unmapped line, named by its number
    assert "next: give 10 agent(s) a driver" in done.stderr
    plan = yaml.safe_load(out.read_text())
    assert [s["priority"] for s in plan["streams"]] == ["critical", "high", "medium", "medium"]
    checked = _orchestrator("validate", str(out))
    assert checked.returncode == 2
    problems = [line for line in checked.stderr.splitlines() if f"{out}:" in line]
    assert len(problems) == 10
    assert all("driver" in line and "fix:" in line for line in problems)
    assert any("'security-validator' has no driver to perform its 9" in p for p in problems)
    # Filling in what validate asked for makes the plan valid.
    shutil.copy(ROOT / "examples" / "agents" / "echo_agent.py", tmp_path / "echo_agent.py")
    for agent in plan["agents"].values():
        agent["driver"] = {"command": ["python3", "echo_agent.py"], "pass_env": ["PATH"]}
    out.write_text(yaml.safe_dump(plan, sort_keys=False))
    again = _orchestrator("validate", str(out))
    assert again.returncode == 0, again.stderr


def test_json_prints_the_mapping_report_on_stdout(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    done = _orchestrator("import", str(SEED), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["output"] == str(out)
    assert report["summary"].startswith("4 streams, 10 agents, 20 steps")
    assert {"mapped", "unmapped", "assumptions", "repaired_lines", "needs_driver"} <= set(report)
    assert any(item["line"] == 19 for item in report["unmapped"])
    assert len(report["needs_driver"]) == 10
    assert "yaml" not in report  # the plan went to -o
    alone = _orchestrator("import", str(SEED), "--json")
    assert yaml.safe_load(json.loads(alone.stdout)["yaml"])["version"] == 1


def test_json_on_a_document_that_is_not_a_plan(tmp_path: Path) -> None:
    package = ROOT.parent / "shared" / "seeds" / "002_bca74af58a4315ce.txt"
    target = package if package.exists() else tmp_path / "package.md"
    if not package.exists():
        target.write_text("# Strategic Context Package - X\n**Token Limit**: 3000 tokens\n")
    done = _orchestrator("import", str(target), "--json")
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert "context package" in error[0]["reason"]
    assert error[0]["fix"]
    assert "Traceback" not in done.stderr


def test_agents_come_from_definitions_beside_the_document(tmp_path: Path) -> None:
    agents = tmp_path / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "scanner.md").write_text(
        "---\nname: Security Scanner\ndescription: Finds holes\ntools: Read, Grep\n"
        "model: haiku\n---\nScan.\n"
    )
    (agents / "broken.md").write_text("no front matter\n")
    doc = tmp_path / "PLAN.md"
    doc.write_text(
        "# Plan\n\n### Stream 1: Audit (P0)\n- security-scanner: Scan the API\n"
        "- docs-writer: Write the report\n"
    )
    out = tmp_path / "plan.yaml"
    done = _orchestrator("import", str(doc), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "skipped agent definition" in done.stderr and "broken.md" in done.stderr
    plan = yaml.safe_load(out.read_text())
    scanner = plan["agents"]["security-scanner"]
    assert scanner["display_name"] == "Security Scanner"
    assert scanner["role"] == "Finds holes"
    assert "driver" not in scanner
    assert "scanner.md (model haiku; tools Read, Grep)" in out.read_text()
    # --agents-dir points somewhere else.
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "w.md").write_text("---\nname: Docs Writer\n---\n")
    done = _orchestrator("import", str(doc), "-o", str(out), "--agents-dir", str(other))
    plan = yaml.safe_load(out.read_text())
    assert plan["agents"]["docs-writer"]["display_name"] == "Docs Writer"
    assert "display_name" not in plan["agents"]["security-scanner"]


def test_the_readme_example_imports(tmp_path: Path) -> None:
    out = tmp_path / "plan.yaml"
    done = _orchestrator("import", str(EXAMPLE), "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"].startswith("3 streams, ")
    plan = yaml.safe_load(out.read_text())
    assert [s["id"] for s in plan["streams"]] == ["database-migration", "api-rollout", "release"]
