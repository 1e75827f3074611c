"""The protocol's documents, their documentation, and the example agent and plan."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from agents.base import ActionContext
from agents.drivers import (
    AgentAnswer,
    ExternalParams,
    describe_errors,
    protocol_schemas,
    run_external,
)
from agents.plans import load_plan
from context_packages import build_package
from streams.model import DriverSpec

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "agent-protocol.md"
EXAMPLE_PLAN = ROOT / "examples" / "agent-plan.yaml"
ECHO_AGENT = ROOT / "examples" / "agents" / "echo_agent.py"
_SCHEMA_BLOCK = re.compile(r"<!-- schema: (\w+) [^\n]*-->\n```json\n(.*?)\n```", re.S)


def test_documented_schemas_are_the_models_schemas() -> None:
    documented = {
        m.group(1): json.loads(m.group(2)) for m in _SCHEMA_BLOCK.finditer(DOC.read_text())
    }
    current = protocol_schemas()
    assert set(documented) == set(current)
    for name, schema in current.items():
        assert documented[name] == schema, (
            f"docs/agent-protocol.md's {name} schema is stale; paste this in its place:\n"
            + json.dumps(schema, indent=2)
        )


def test_documented_example_answer_is_valid() -> None:
    blocks = re.findall(r"Its answer:\n\n```json\n(.*?)\n```", DOC.read_text(), re.S)
    (example,) = blocks
    answer = AgentAnswer.model_validate_json(example)
    assert answer.status == "succeeded" and answer.evidence[0].metrics == {"note_bytes": 332.0}


def test_answer_defaults_and_strictness() -> None:
    minimal = AgentAnswer.model_validate_json('{"status": "failed", "summary": "no"}')
    assert minimal.protocol == 1 and minimal.evidence == [] and minimal.metrics == {}
    for bad in (
        '{"status": "succeeded", "summary": "x", "metrics": {"a": NaN}}',
        '{"status": "succeeded", "summary": "x", "metrics": {"a b": 1}}',
        '{"status": "succeeded", "summary": "x", "protocol": 2}',
        '{"status": "succeeded", "summary": ""}',
    ):
        with pytest.raises(ValidationError):
            AgentAnswer.model_validate_json(bad)


def test_describe_errors_is_short() -> None:
    data = {f"x{i}": 1 for i in range(10)}
    with pytest.raises(ValidationError) as caught:
        AgentAnswer.model_validate({"status": "succeeded", "summary": "s", **data})
    assert describe_errors(caught.value) == (
        "unknown field 'x0'; unknown field 'x1'; unknown field 'x2'; and 7 more"
    )


def test_params_need_exactly_one_task() -> None:
    base = {
        "driver": {"command": ["agent"]},
        "plan": "p",
        "package_markdown": "",
        "package_tokens": 0,
        "package_token_limit": 64,
        "package_sha256": "0" * 64,
    }
    with pytest.raises(ValidationError, match="exactly one of"):
        ExternalParams.model_validate(base)
    with pytest.raises(ValidationError, match="exactly one of"):
        ExternalParams.model_validate({**base, "instruction": "do", "action": "command"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        ExternalParams.model_validate({**base, "instruction": "do", "shell": True})
    params = ExternalParams.model_validate({**base, "action": "command", "with": {"argv": ["x"]}})
    assert params.with_ == {"argv": ["x"]}


def test_example_plan_validates() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    agent = plan.agents["config-writer"]
    assert agent.driver is not None and not agent.can
    assert [s.instruction for s in plan.streams[0].steps][:2] == [
        "Update docker-compose.yml with Redis password configuration",
        "Update service connection strings to include authentication",
    ]


async def test_echo_agent_performs_a_step_of_the_example_plan(tmp_path: Path) -> None:
    plan = load_plan(EXAMPLE_PLAN)
    stream = plan.streams[0]
    step = stream.steps[2]
    package = build_package(plan, step.agent)
    spec = plan.agents[step.agent].driver
    assert spec is not None
    # The plan's own driver, with this interpreter and the example copied to a scratch dir.
    (tmp_path / "agents").mkdir()
    shutil.copy(ECHO_AGENT, tmp_path / "agents" / "echo_agent.py")
    driver = spec.model_copy(update={"command": [sys.executable, *spec.command[1:]]})
    params = ExternalParams.for_step(
        driver=driver, plan=plan.plan, step=step, package=package, timeout_s=step.timeout
    )
    assert params.instruction == "Restart Redis container with new configuration"
    assert params.package_sha256 == package.sha256 and params.deadline_s == 10.0
    ctx = ActionContext(
        run_id="run-1",
        stream=stream.id,
        step=step.id,
        agent=step.agent,
        attempt=1,
        fences={"redis": 42},
        env={"PATH": os.environ["PATH"], "ORCH_RUN_ID": "run-1"},
        workdir=tmp_path,
    )
    with anyio.fail_after(30):
        result = await run_external(ctx, params)
    assert result.ok, result.summary
    note = (tmp_path / "agent-notes" / "redis-auth.restart-redis.md").read_text()
    assert "Instruction: Restart Redis container with new configuration" in note
    assert "Fences: redis=42" in note and package.sha256 in note
    assert result.metrics["echo.instruction_words"] == 6.0
    assert result.metrics["echo.package_tokens"] == float(package.tokens)
    (evidence,) = result.evidence
    assert not evidence.verified and evidence.metrics["note_bytes"] == len(note.encode())


async def test_echo_agent_declines_action_steps(tmp_path: Path) -> None:
    params = ExternalParams(
        driver=DriverSpec(command=[sys.executable, str(ECHO_AGENT)]),
        plan="p",
        action="command",
        with_={"argv": ["true"]},
        package_markdown="",
        package_tokens=0,
        package_token_limit=64,
        package_sha256="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    )
    ctx = ActionContext(
        run_id="r", stream="s", step="t", agent="a", attempt=1, fences={}, env={}, workdir=tmp_path
    )
    with anyio.fail_after(30):
        result = await run_external(ctx, params)
    assert not result.ok
    assert result.summary == (
        "agent reported failure: echo agent follows instructions only, not action command"
    )
