"""Building packages for the phase-2 example: isolation, limits, cuts, hashes, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from context_packages import (
    CutPriority,
    PackageDocument,
    PackageTooLarge,
    TiktokenTokenizer,
    UnknownAgent,
    build_package,
    build_packages,
    gather_sections,
    package_token_limit,
    render_package,
)
from streams.model import Plan, StepSpec
from streams.validation import effective_needs
from tests.context_packages.conftest import ROOT

AGENTS = [
    "performance-profiler",
    "k8s-architecture-specialist",
    "schema-database-expert",
    "backend-gateway-expert",
    "security-validator",
    "fullstack-communication-auditor",
    "monitoring-analyst",
    "infrastructure-recovery",
    "webui-architect",
    "langgraph-ollama-analyst",
]


def _all_steps(plan: Plan) -> list[tuple[str, list[StepSpec]]]:
    lists = []
    for stream in plan.streams:
        lists.append((stream.id, stream.steps))
        if stream.rollback is not None:
            lists.append((stream.id, stream.rollback.steps))
    return lists


def _waits_on(plan: Plan, agent: str) -> set[str]:
    """Ids of other agents' steps that ``agent``'s steps need directly."""
    ids: set[str] = set()
    for _, steps in _all_steps(plan):
        needs = effective_needs(steps)
        for step in steps:
            if step.agent == agent:
                ids.update(needs[step.id])
    return ids - {s.id for _, steps in _all_steps(plan) for s in steps if s.agent == agent}


def _mentions(text: str, ident: str) -> bool:
    return re.search(rf"(?<![\w.-]){re.escape(ident)}(?![\w.-])", text) is not None


def _argv(step: StepSpec) -> str:
    return json.dumps(step.with_.get("argv"), ensure_ascii=False)


def test_phase2_agents_are_all_covered(phase2: Plan) -> None:
    assert sorted(phase2.agents) == sorted(AGENTS)


@pytest.mark.parametrize("agent", AGENTS)
def test_isolation(phase2: Plan, tokenizer: TiktokenTokenizer, agent: str) -> None:
    """A package holds the agent's own steps with their command lines, the ids (and runners)
    of the steps it waits on, and nothing else of other agents' steps."""
    package = build_package(phase2, agent, tokenizer=tokenizer)
    text = package.markdown
    assert package.cut == ()  # 4000 tokens is room for everything here
    steps = [s for _, lst in _all_steps(phase2) for s in lst]
    own = [s for s in steps if s.agent == agent]
    own_argv = {_argv(s) for s in own}
    waits = _waits_on(phase2, agent)
    for step in own:
        assert _mentions(text, step.id)
        assert _argv(step) in text
    for step in steps:
        if step.agent == agent:
            continue
        if step.id in waits:
            # Named, with who runs it, but never its command line.
            assert f"`{step.id}` (" in text and f"run by {step.agent}" in text
        else:
            assert not _mentions(text, step.id), f"{agent}'s package names {step.id}"
        if _argv(step) not in own_argv:  # some steps of different agents share a command
            assert _argv(step) not in text
        if step.title:
            assert step.title not in text


def test_dependencies_name_the_runner(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    text = build_package(phase2, "performance-profiler", tokenizer=tokenizer).markdown
    assert (
        "- `validate-auth` (redis-auth), run by security-validator: before your "
        "`monitor-stability`" in text
    )


def test_package_contents(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    package = build_package(phase2, "infrastructure-recovery", tokenizer=tokenizer)
    text = package.markdown
    assert text.startswith(
        "# Context Package - infrastructure-recovery\n"
        "**Target**: infrastructure-recovery (configuration management)\n"
    )
    assert f"**Token Limit**: 4000 tokens | **Package Size**: {package.tokens} tokens" in text
    assert package.tokens == tokenizer.count(text)
    assert [s.title for s in package.sections] == [
        "Plan Overview",
        "Role and Scope",
        "Streams Served",
        "Your Steps",
        "Dependencies",
        "Team",
        "Success Criteria",
        "Your Rollback Steps",
        "Coordination Instructions",
    ]
    assert "**Scope**: you may run only these actions: `command`" in text
    assert "**Locks**: compose-file" in text
    assert "timeout 2m00s per attempt, 1 retry" in text
    assert "**Recovery Budget**: 2m00s" in text and "`remove-requirepass`" in text
    assert "- security-validator: Redis authentication" in text
    assert "Return every result to the orchestrator" in text
    assert "`redis.latency_ms.p50 < 5` (weight 0.5)" in text


def test_evidence_requirements_of_own_steps(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    text = build_package(phase2, "security-validator", tokenizer=tokenizer).markdown
    assert (
        "**Evidence**: `redis-cli-auth`: redis-cli AUTH command validation "
        "(verified by the daemon)" in text
    )
    assert "(verified by the daemon; from your step `validate-auth`)" in text


def test_agent_limit_overrides_plan_default(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    data = phase2.model_dump(by_alias=True)
    data["defaults"]["token_limit"] = 900
    data["agents"]["performance-profiler"]["token_limit"] = 5000
    plan = Plan.model_validate(data)
    assert package_token_limit(plan, "performance-profiler") == 5000
    assert package_token_limit(plan, "monitoring-analyst") == 900
    big = build_package(plan, "performance-profiler", tokenizer=tokenizer)
    assert big.token_limit == 5000 and big.cut == ()
    assert "**Token Limit**: 5000 tokens" in big.markdown
    small = build_package(plan, "monitoring-analyst", tokenizer=tokenizer)
    assert small.token_limit == 900 and small.tokens <= 900
    # An explicit limit (e.g. from the command line) wins over both.
    assert (
        build_package(
            plan, "performance-profiler", tokenizer=tokenizer, token_limit=700
        ).token_limit
        == 700
    )


def test_cuts_follow_the_declared_order(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    full = build_package(phase2, "performance-profiler", tokenizer=tokenizer)
    material = gather_sections(phase2, "performance-profiler")
    order = [s.title for s in sorted(material, key=lambda s: s.priority) if not s.required]
    assert order == [
        "Plan Overview",
        "Team",
        "Streams Served",
        "Dependencies",
        "Success Criteria",
        "Coordination Instructions",
    ]
    previous = 0
    for limit in range(full.tokens, 0, -25):
        try:
            package = build_package(
                phase2, "performance-profiler", tokenizer=tokenizer, token_limit=limit
            )
        except PackageTooLarge as exc:
            assert exc.minimum > limit
            break
        assert package.tokens <= limit
        titles = [c.title for c in package.cut]
        assert titles == order[: len(titles)]
        assert len(titles) >= previous
        previous = len(titles)
        for cut in package.cut:
            assert f"\n## {cut.title}\n" not in package.markdown
            assert f"over the limit of {limit}" in cut.reason
        if titles:
            assert f"**Cut to fit**: {', '.join(titles)}\n" in package.markdown
    assert previous == len(order)  # the loop reached the minimal package


def test_minimal_package_too_large(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    with pytest.raises(PackageTooLarge) as caught:
        build_package(phase2, "schema-database-expert", tokenizer=tokenizer, token_limit=100)
    error = caught.value
    assert error.agent == "schema-database-expert" and error.limit == 100
    assert "'schema-database-expert'" in str(error) and "100 tokens" in str(error)
    assert f"at least {error.minimum}" in str(error)
    # The minimum is exact: at that limit the package fits, one less it does not.
    fitted = build_package(
        phase2, "schema-database-expert", tokenizer=tokenizer, token_limit=error.minimum
    )
    assert fitted.tokens == error.minimum
    assert {c.title for c in fitted.cut} == {
        s.title for s in gather_sections(phase2, "schema-database-expert") if not s.required
    }
    with pytest.raises(PackageTooLarge):
        build_package(
            phase2, "schema-database-expert", tokenizer=tokenizer, token_limit=error.minimum - 1
        )


def test_unknown_agent(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    with pytest.raises(UnknownAgent, match=r"no agent 'nobody'.*security-validator"):
        build_package(phase2, "nobody", tokenizer=tokenizer)


def test_json_rendering(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    text = render_package(
        phase2, "webui-architect", as_json=True, tokenizer=tokenizer, token_limit=400
    )
    data = json.loads(text)
    assert list(data) == [
        "agent",
        "token_limit",
        "tokens",
        "tokenizer",
        "sections",
        "cut",
        "sha256",
        "markdown",
    ]
    assert data["agent"] == "webui-architect" and data["token_limit"] == 400
    assert data["tokenizer"] == "cl100k_base"
    assert data["tokens"] == tokenizer.count(data["markdown"]) <= 400
    assert data["cut"] and all(
        set(c) == {"title", "tokens", "priority", "reason"} for c in data["cut"]
    )
    assert all(set(s) == {"title", "tokens", "priority", "required"} for s in data["sections"])
    document = PackageDocument.model_validate_json(text)  # a stored package reads back
    assert (
        document.sha256
        == build_package(phase2, "webui-architect", tokenizer=tokenizer, token_limit=400).sha256
    )
    markdown = render_package(phase2, "webui-architect", tokenizer=tokenizer, token_limit=400)
    assert markdown == data["markdown"]


def test_section_priorities_in_json(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    package = build_package(phase2, "backend-gateway-expert", tokenizer=tokenizer)
    by_title = {s.title: s for s in package.sections}
    assert by_title["Your Steps"].required and by_title["Role and Scope"].required
    assert by_title["Your Steps"].priority == CutPriority.REQUIRED
    assert by_title["Team"].priority == CutPriority.TEAM and not by_title["Team"].required


def test_hash_is_stable_across_runs(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    expected = build_package(phase2, "monitoring-analyst", tokenizer=tokenizer).sha256
    script = (
        "from agents.plans import load_plan; from context_packages import build_package; "
        "print(build_package(load_plan('examples/phase2.yaml'), "
        "'monitoring-analyst').sha256)"
    )
    for seed in ("0", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


def _reordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_hash_ignores_dict_order(phase2: Plan, tokenizer: TiktokenTokenizer) -> None:
    data = phase2.model_dump(by_alias=True)
    data["streams"][0]["steps"][0]["with"]["env"] = {"B": "2", "A": "1", "C": "3"}
    plan = Plan.model_validate(data)
    shuffled = Plan.model_validate(_reordered(data))
    assert list(shuffled.agents) != list(plan.agents)
    for agent in plan.agents:
        assert (
            build_package(plan, agent, tokenizer=tokenizer).sha256
            == build_package(shuffled, agent, tokenizer=tokenizer).sha256
        )


def test_hash_changes_with_the_agents_part_of_the_plan(
    phase2: Plan, tokenizer: TiktokenTokenizer
) -> None:
    before = build_packages(phase2, tokenizer=tokenizer)
    data = phase2.model_dump(by_alias=True)
    step = data["streams"][0]["steps"][0]  # patch-compose, infrastructure-recovery's
    step["with"]["argv"] = [*step["with"]["argv"], "--dry-run"]
    after = build_packages(Plan.model_validate(data), tokenizer=tokenizer)
    assert after["infrastructure-recovery"].sha256 != before["infrastructure-recovery"].sha256
    # Another agent's command line is not in anyone else's package, so theirs stay the same.
    for agent in AGENTS:
        if agent != "infrastructure-recovery":
            assert after[agent].sha256 == before[agent].sha256, agent
    assert (
        before["infrastructure-recovery"].sha256
        == build_package(phase2, "infrastructure-recovery", tokenizer=tokenizer).sha256
    )
