"""A command imports only what it uses: ``--version``, ``validate`` and ``status`` in fresh
processes, then what they left in ``sys.modules``.

No timing here (``benchmarks/cli_startup.py`` measures the time); these tests keep the
heavy libraries out of the commands that do not use them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from orchestrator.cli import COMMANDS, cli
from tests.daemon_process import DaemonProcess

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "phase2.yaml"

#: Runs the CLI with argv[2:] in this fresh interpreter, then writes its exit code and every
#: module it imported to argv[1] (a file: the command's own output goes to stdout). Written
#: at exit: a command that is done may end the process at once (ExitNow), atexit handlers run.
PROBE = """
import atexit, json, sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["orchestrator", *args]
state = {"code": None}
def dump():
    with open(out, "w") as f:
        json.dump({"code": state["code"], "modules": sorted(sys.modules)}, f)
atexit.register(dump)
from orchestrator.cli import main
if args:
    try:
        main()
    except SystemExit as exc:
        state["code"] = exc.code
"""

#: What no light command may load: the Docker SDK, Redis, asyncpg, the tokenizer, the
#: round-trip YAML library, HTTP, the analysis and what only runs and the daemon need.
HEAVY = (
    "docker",
    "redis",
    "asyncpg",
    "tiktoken",
    "ruamel",
    "httpx",
    "trio",
    "pytest",
    "orchestrator.analysis",
    "orchestrator.scheduler",
    "orchestrator.store",
    "orchestrator.coordination",
    "orchestrator.daemon.service",
    "context_packages",
)


def probe(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    if result["code"] is None and args:  # ended at once (ExitNow): its code is the process's
        result["code"] = done.returncode
    else:
        assert done.returncode == 0, done.stderr
    result["stdout"] = done.stdout
    return result


def loaded(modules: list[str], *names: str) -> list[str]:
    """Which of ``names`` (packages: any of their modules counts) are in ``modules``."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_importing_the_cli_imports_no_command(tmp_path: Path) -> None:
    modules = probe(tmp_path)["modules"]
    assert "orchestrator.cli" in modules
    assert loaded(modules, *HEAVY) == []
    command_modules = {target.partition(":")[0] for target in COMMANDS.values()}
    assert loaded(modules, *command_modules) == []
    assert loaded(modules, "agents", "streams", "pydantic", "anyio", "structlog") == []


def test_version_imports_no_command(tmp_path: Path) -> None:
    result = probe(tmp_path, "--version")
    assert result["code"] == 0
    assert "version" in result["stdout"]
    assert loaded(result["modules"], *HEAVY) == []
    assert loaded(result["modules"], "agents", "streams", "pydantic", "rich") == []


def test_validate_imports_the_plan_models_but_no_heavy_library(tmp_path: Path) -> None:
    result = probe(tmp_path, "validate", str(EXAMPLE))
    assert result["code"] == 0, result
    assert "valid plan" in result["stdout"]
    # It validated against the parameters of the one action the plan uses, and imported
    # no other action's module...
    actions = [m for m in result["modules"] if m.startswith("agents.actions.")]
    assert "agents.actions.command" in actions
    assert loaded(actions, "agents.actions.docker", "agents.actions.redis") == []
    # ...nor the libraries the actions drive.
    assert loaded(result["modules"], *HEAVY) == []
    assert loaded(result["modules"], "orchestrator.daemon", "pydantic_settings") == []
    # A plan without agents_from reads no agent definitions (their model, the Markdown
    # helpers): they are imported when a plan names a folder of them.
    assert loaded(result["modules"], "streams.agent_definitions", "streams.markdown") == []
    # Its gate's criteria are parsed, not evaluated; no JSON Schema is exported.
    assert loaded(result["modules"], "streams.gate_evaluation", "streams.schema") == []


def test_a_compose_patch_step_validates_without_ruamel(tmp_path: Path) -> None:
    plan = tmp_path / "compose.yaml"
    plan.write_text(
        "version: 1\nplan: p\ncaps: {light: null}\n"
        "agents: {ops: {class: light, can: [compose.patch]}}\n"
        "streams:\n  - id: s\n    team: [ops]\n    steps:\n"
        "      - id: patch\n        agent: ops\n        action: compose.patch\n"
        "        with: {file: c.yaml, set: {'services.redis.image': 'redis:7'}}\n"
    )
    result = probe(tmp_path, "validate", str(plan))
    assert result["code"] == 0, result
    assert loaded(result["modules"], "ruamel", "docker") == []


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path).start()
    try:
        yield process
    finally:
        process.close()


def test_status_imports_the_client_but_not_the_daemon(
    tmp_path: Path, daemon: DaemonProcess
) -> None:
    result = probe(tmp_path, "status", "--json", env=daemon.env())
    assert result["code"] == 0, result
    assert json.loads(result["stdout"]) == {"runs": []}
    assert "orchestrator.daemon.client" in result["modules"]
    assert loaded(result["modules"], *HEAVY) == []
    assert loaded(result["modules"], "agents", "streams") == []


def test_every_command_resolves_to_its_name() -> None:
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command)
        assert command.name == name
    assert cli.list_commands(context) == sorted(COMMANDS)
