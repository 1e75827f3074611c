"""``agents_from:``: Claude Code agent definitions (the shared corpus) as plan agents."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.plans import load_plan
from context_packages import gather_sections
from foundation.errors import PlanInvalid
from streams.agents_from import CLAUDE_TOOL_ACTIONS, map_tools, tool_notes

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus" / "agents"


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """The corpus definitions under .claude/agents, named as Claude Code names them."""
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    folder = tmp_path / ".claude" / "agents"
    folder.mkdir(parents=True)
    for path in CORPUS.glob("*.md"):
        shutil.copy(path, folder / path.name.rsplit("__", 1)[-1])
    return folder


def write_plan(tmp_path: Path, body: str) -> Path:
    plan = tmp_path / "plan.yaml"
    plan.write_text(body)
    return plan


PLAN = """\
plan: llm
caps: {io: 2, light: null}
defaults: {agent_class: light}
agents_from: [.claude/agents]
agents:
  security-validator:
    class: io
    can: [file.read, file.edit, command]
  security-scanner:
    driver: {command: [python3, scan.py]}
streams:
  - id: audit
    team: [security-scanner, security-validator]
    steps:
      - Scan the compose file for exposed secrets
      - {id: fix, agent: security-validator, action: command, with: {argv: ["true"]}}
"""


def test_definitions_become_agents_with_ids_roles_scope_and_instructions(
    agents_dir: Path, tmp_path: Path
) -> None:
    plan = load_plan(write_plan(tmp_path, PLAN))
    scanner = plan.agents["security-scanner"]
    assert scanner.display_name == "Security Scanner"
    assert scanner.role == "Security vulnerability detection and mitigation guidance"
    assert scanner.resource_class == "light"  # defaults.agent_class
    assert scanner.can == ["file.read"]  # Read; Glob and Grep have no action
    assert scanner.claude_tools == ["Read", "Glob", "Grep"]
    assert scanner.instructions is not None and scanner.instructions.startswith("#")
    assert "---" not in scanner.instructions.splitlines()[0]
    assert scanner.driver is not None  # the plan's entry extends the definition
    assert {"performance-profiler", "schema-database-expert", "test-generator"} <= set(plan.agents)
    # No `tools:` is every tool in Claude Code: every action of the table here.
    assert plan.agents["performance-profiler"].can == list(
        dict.fromkeys(CLAUDE_TOOL_ACTIONS.values())
    )
    # The plan's own entry overrides the definition key by key and keeps the rest.
    validator = plan.agents["security-validator"]
    assert validator.resource_class == "io"
    assert validator.can == ["file.read", "file.edit", "command"]
    assert validator.role == "Specialized agent for handling security validator tasks."
    assert validator.instructions is not None and "Security Validator" in validator.instructions


def test_the_instructions_go_into_the_context_package(agents_dir: Path, tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, PLAN))
    sections = {s.title: s.body for s in gather_sections(plan, "security-scanner")}
    assert sections["Your Instructions"] == plan.agents["security-scanner"].instructions


def test_unmapped_tools_are_reported_not_dropped(agents_dir: Path, tmp_path: Path) -> None:
    plan = load_plan(write_plan(tmp_path, PLAN))
    notes = tool_notes(plan.agents)
    assert any("'security-scanner'" in n and "Glob, Grep" in n for n in notes)
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(tmp_path / "plan.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "note: agent 'security-scanner': Claude Code tool(s) Glob, Grep" in done.stdout


def test_the_tool_table() -> None:
    assert map_tools(["Read", "Edit", "MultiEdit", "Write", "Bash", "Grep", "mcp__x__y"]) == (
        ["file.read", "file.edit", "file.write", "command"],
        ["Grep", "mcp__x__y"],
    )
    assert CLAUDE_TOOL_ACTIONS["WebFetch"] == "http.probe"


def test_an_agent_without_a_class_and_a_missing_folder_are_placed_problems(
    agents_dir: Path, tmp_path: Path
) -> None:
    text = PLAN.replace("defaults: {agent_class: light}\n", "").replace(
        "agents_from: [.claude/agents]", "agents_from:\n  - .claude/agents\n  - nowhere"
    )
    with pytest.raises(PlanInvalid) as caught:
        load_plan(write_plan(tmp_path, text))
    problems = caught.value.problems
    no_class = [p for p in problems if "has no resource class" in p.reason]
    assert no_class and all(p.line == 4 for p in no_class)  # the first agents_from entry
    assert any("'security-scanner'" in p.reason for p in no_class)
    assert not any("'security-validator'" in p.reason for p in no_class)  # the plan gives it
    (missing,) = [p for p in problems if "no such folder" in p.reason]
    assert missing.line == 5
    assert no_class[0].line < missing.line


def test_a_plan_without_agents_from_is_unchanged(tmp_path: Path) -> None:
    plan = load_plan(
        write_plan(
            tmp_path,
            "plan: p\ncaps: {c: null}\nagents: {a: {class: c, can: [sleep]}}\n"
            "streams: [{id: s, team: [a], steps: [{id: x, agent: a, action: sleep, "
            "with: {seconds: 0}}]}]\n",
        )
    )
    assert plan.agents_from == [] and plan.agents["a"].claude_tools == []


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_a_plan_valid_without_its_definitions_still_merges_them(
    tmp_path: Path, suffix: str
) -> None:
    # Every own agent has a class and every step names one: such a plan validates on the
    # fast path without its definitions, which must still be read and merged.
    folder = tmp_path / ".claude" / "agents"
    folder.mkdir(parents=True)
    (folder / "helper.md").write_text(
        "---\nname: helper\ndescription: Helps.\ntools: Read\n---\nBe helpful always.\n"
    )
    body = {
        "plan": "merge",
        "caps": {"io": 2},
        "defaults": {"agent_class": "io"},
        "agents_from": [".claude/agents"],
        "agents": {"worker": {"class": "io", "can": ["sleep"]}},
        "streams": [
            {
                "id": "s",
                "team": ["worker"],
                "steps": [
                    {"id": "a", "agent": "worker", "action": "sleep", "with": {"seconds": 0}}
                ],
            }
        ],
    }
    text = json.dumps(body) if suffix == "json" else yaml.safe_dump(body, sort_keys=False)
    plan = tmp_path / f"plan.{suffix}"
    plan.write_text(text)
    loaded = load_plan(plan)
    assert sorted(loaded.agents) == ["helper", "worker"]
    assert loaded.agents["helper"].can == ["file.read"]
