"""``orchestrator validate`` and ``orchestrator schema`` as a user runs them: real processes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "phase2.yaml"

VALID = """\
version: 1
plan: cli-demo
caps: {cpu: 2, io: 1, light: null}
resources: [redis]
agents:
  sec: {class: io, can: [command, sleep]}
  perf: {class: cpu, can: [sleep]}
streams:
  - id: a
    team: [sec, perf]
    timeline: 1s..5s
    steps:
      - {id: s1, agent: sec, action: sleep, with: {seconds: 10ms}, locks: [redis]}
      - {id: s2, agent: perf, action: sleep, timeout: 2m}
  - id: b
    team: [sec]
    depends_on: [a]
    steps:
      - {id: x, agent: sec, action: command, with: {argv: ["true"]}}
"""

# Four problems of different kinds, each on its own line.
INVALID = (
    VALID.replace("perf: {class: cpu,", "perf: {class: gpu,")
    .replace("locks: [redis]", "locks: [cache]")
    .replace("team: [sec]\n", "team: [sec, ghost]\n")
    .replace("depends_on: [a]", "depends_on: [a, b]")
)


def orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


def locate(text: str, needle: str) -> str:
    """``line:column`` (1-based) of the first ``needle`` in ``text``."""
    index = text.index(needle)
    return f"{text.count(chr(10), 0, index) + 1}:{index - text.rfind(chr(10), 0, index)}"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    done = orchestrator("schema")
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_validate_a_valid_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(VALID, encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{plan}: valid plan 'cli-demo': 2 streams, 3 steps, 2 agents"
    assert done.stderr == ""


def test_validate_a_valid_json_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(yaml.safe_load(VALID), indent=2), encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 0, done.stderr
    assert "valid plan 'cli-demo'" in done.stdout


def test_validate_the_shipped_example() -> None:
    done = orchestrator("validate", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "valid plan" in done.stdout


def test_validate_an_invalid_plan_prints_every_problem_with_its_place(tmp_path: Path) -> None:
    plan = tmp_path / "bad.yaml"
    plan.write_text(INVALID, encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "plan invalid: 4 problems"
    assert all(re.match(rf"{re.escape(str(plan))}:\d+:\d+: \S", line) for line in lines[1:])
    places = {line.split(": ", 1)[0].removeprefix(f"{plan}:"): line for line in lines[1:]}
    assert set(places) == {
        locate(INVALID, "gpu"),
        locate(INVALID, "cache"),
        locate(INVALID, "ghost"),
        locate(INVALID, "b]"),
    }
    assert "unknown resource class 'gpu'" in places[locate(INVALID, "gpu")]
    assert "(fix: did you mean 'cpu'?" in places[locate(INVALID, "gpu")]
    assert "stream 'b': unknown agent 'ghost'" in places[locate(INVALID, "ghost")]
    assert "stream 'b' depends on itself" in places[locate(INVALID, "b]")]


@pytest.mark.parametrize(
    ("driver", "needle", "message"),
    [
        (
            "{llm: {provider: foo, model: m}}",
            "foo",
            "agents.sec.driver.llm.provider: Input should be 'openai' or 'anthropic'",
        ),
        (
            "{claude_code: {max_turns: 0}}",
            "0}",
            "agents.sec.driver.claude_code.max_turns: Input should be greater than or equal to 1",
        ),
        ("{command: [5]}", "5]", "agents.sec.driver.command.0: Input should be a valid string"),
    ],
)
def test_a_bad_driver_is_located_where_it_was_written(
    tmp_path: Path, driver: str, needle: str, message: str
) -> None:
    text = VALID.replace(
        "sec: {class: io, can: [command, sleep]}", f"sec: {{class: io, driver: {driver}}}"
    )
    plan = tmp_path / "bad.yaml"
    plan.write_text(text, encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 2
    assert done.stderr.splitlines()[1:] == [f"{plan}:{locate(text, needle)}: {message}"]


def test_validate_malformed_yaml(tmp_path: Path) -> None:
    plan = tmp_path / "broken.yaml"
    text = "plan: demo\ncaps: {cpu: 2\nagents: {}\n"
    plan.write_text(text, encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert re.search(rf"^{re.escape(str(plan))}:3:7: malformed YAML: ", done.stderr, re.M)


def test_validate_malformed_json(tmp_path: Path) -> None:
    plan = tmp_path / "broken.json"
    plan.write_text('{\n  "plan": "demo",\n  "caps": {"cpu": 2,}\n}\n', encoding="utf-8")
    done = orchestrator("validate", str(plan))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"{plan}:3:21: malformed JSON: " in done.stderr


def test_validate_a_missing_file(tmp_path: Path) -> None:
    done = orchestrator("validate", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "no such file" in done.stderr


def test_schema_is_a_valid_json_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("source", ["inline", "example"])
def test_schema_accepts_valid_plans(schema: dict[str, Any], source: str) -> None:
    text = VALID if source == "inline" else EXAMPLE.read_text(encoding="utf-8")
    jsonschema.validate(yaml.safe_load(text), schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        ("plan: cli-demo\n", "plan: cli-demo\nbogus: 1\n", [], "'bogus' was unexpected"),
        ("locks: [redis]", "lock: [redis]", ["streams", 0, "steps", 0], "'lock' was unexpected"),
        ("{class: io,", "{klass: io,", ["agents", "sec"], "'klass' was unexpected"),
        ("io: 1,", "io: 0,", ["caps", "io"], ""),
        ("timeout: 2m", "timeout: 2x", ["streams", 0, "steps", 1, "timeout"], ""),
    ],
    ids=["top-level-key", "step-key", "agent-key", "cap-zero", "bad-duration"],
)
def test_schema_rejects_what_the_loader_rejects(
    schema: dict[str, Any], old: str, new: str, where: list[str | int], says: str
) -> None:
    assert VALID.count(old) == 1
    data = yaml.safe_load(VALID.replace(old, new))
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(data))
    assert errors
    assert {tuple(e.absolute_path) for e in errors} == {tuple(where)}
    assert any(says in e.message for e in errors)
