"""One output flag and one exit-code table (issue 17): ``-o json|table`` means the same on
every command that prints, and the exit codes in ``--help`` and the README are the map's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from foundation.status import EXIT_CODE_MEANINGS, ExitCode
from orchestrator.cli import cli

ROOT = Path(__file__).resolve().parent.parent
#: Commands that write files (their -o names the file) or serve, or print JSON always;
#: agent-tools is a stdio bridge whose stdout is the MCP protocol itself.
NOT_PRINTING = {"import", "report", "daemon", "mcp", "schema", "agent-tools"}


def test_every_printing_command_takes_the_same_output_option() -> None:
    # The group loads its commands lazily: ask it for each, whatever other tests loaded.
    ctx = click.Context(cli)
    commands = {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}
    assert "logs" in commands
    for name, command in commands.items():
        if name in NOT_PRINTING:
            continue
        assert command is not None, name
        option = next((p for p in command.params if p.name == "output"), None)
        assert isinstance(option, click.Option), f"{name} has no -o"
        assert option.opts == ["-o", "--output"], name
        assert isinstance(option.type, click.Choice) and list(option.type.choices) == [
            "json",
            "table",
        ], name


def test_exit_codes_are_distinct_and_in_help_and_readme() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode) == len(EXIT_CODE_MEANINGS)
    assert ExitCode.CANCELLED != ExitCode.INTERRUPTED
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=400)
    assert shown.exit_code == 0
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(meaning)}$", shown.output, re.M), code
    assert "_ORCHESTRATOR_COMPLETE=bash_source orchestrator" in shown.output
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", readme, re.M)
    assert [(int(c), m) for c, m in rows] == [(int(c), m) for c, m in EXIT_CODE_MEANINGS.items()]
    assert "_ORCHESTRATOR_COMPLETE=bash_source orchestrator" in readme
    assert "docs/dashboard.md" in readme


def test_validate_speaks_json_for_good_and_bad_plans(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(cli, ["validate", str(ROOT / "examples" / "phase2.yaml"), "-o", "json"])
    assert good.exit_code == 0, good.output
    document = json.loads(good.output)
    assert document["valid"] is True and document["plan"] == "phase-2-strategic-implementation"
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("version: 1\nplan: x\nstreams: {a: 1}\n")
    bad = runner.invoke(cli, ["validate", str(bad_file), "-o", "json"])
    assert bad.exit_code == ExitCode.INVALID
    problems = json.loads(bad.output)
    assert problems["valid"] is False and str(bad_file) in problems["problems"][0]
    # the old flag still works and means -o json
    assert json.loads(runner.invoke(cli, ["validate", str(bad_file), "--json"]).output) == problems
    table = runner.invoke(cli, ["validate", str(bad_file), "-o", "table"])
    assert table.exit_code == ExitCode.INVALID and not table.output.startswith("{")


def test_run_prints_its_events_as_json_lines(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nplan: jl\ncaps: {light: null}\nagents:\n  a: {class: light, can: [sleep]}\n"
        "streams:\n  - id: s\n    team: [a]\n    steps:\n"
        "      - {id: nap, agent: a, action: sleep, with: {seconds: 0.01}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ORCH_STATE_DIR": str(tmp_path / "state")},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == "succeeded"
