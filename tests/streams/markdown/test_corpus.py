"""Real phase plans written by other people (``../shared/corpus``), and the seed documents:
what must come out of each. CI lays ``shared/`` beside the clone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid
from streams.agent_definitions import read_definitions
from streams.markdown_import import ImportResult, decode_markdown, import_markdown
from streams.model import Plan, StreamSpec

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
PLANS = SHARED / "corpus" / "plans"
AGENTS = SHARED / "corpus" / "agents"

pytestmark = pytest.mark.skipif(not PLANS.is_dir(), reason="../shared/corpus is not here")


def corpus(prefix: str, *, with_agents: bool = False) -> ImportResult:
    (path,) = PLANS.glob(f"{prefix}*")
    text, _ = decode_markdown(path.read_bytes())
    definitions = read_definitions(AGENTS)[0] if with_agents else None
    result = import_markdown(text, path.name, definitions=definitions)
    with pytest.raises(PlanInvalid) as caught:
        load_plan_text(result.yaml_text, "plan.yaml")
    assert all("driver" in p.reason for p in caught.value.problems)
    assert Plan.model_validate(yaml.safe_load(result.yaml_text)) == result.plan
    lines = text.count("\n") + 1
    items = (*result.report.unmapped, *result.report.mapped, *result.report.assumptions)
    assert all(0 <= i.line <= i.end_line <= lines for i in items)
    return result


def streams(result: ImportResult) -> dict[str, StreamSpec]:
    return {s.id: s for s in result.plan.streams}


def test_phase_2_strategic_plan_stream_blocks() -> None:
    result = corpus("zvirb__comandind__.claude-backup-20250820-104328__PHASE_2", with_agents=True)
    by_id = streams(result)
    assert list(by_id) == [
        "infrastructure", "database", "frontend", "integration",
        "backend", "frontend-phase-5", "infrastructure-phase-5", "documentation",
    ]  # fmt: skip
    backend = by_id["backend"]
    assert backend.priority == "high" and by_id["documentation"].priority == "low"
    assert [s.agent for s in backend.steps] == [
        "backend-gateway-expert", "schema-database-expert", "security-validator",
    ]  # fmt: skip
    assert backend.steps[0].instruction == "Fix project CRUD operations"
    assert backend.group == "phase-5" and by_id["database"].group == "phase-3"
    assert set(backend.depends_on) == {"infrastructure", "database", "frontend", "integration"}
    assert result.plan.defaults.token_limit == 3000
    validator = result.plan.agents["security-validator"]
    assert validator.role is not None and validator.role.startswith("Specialized agent")
    assert result.plan.total_steps() == 20


def test_phase_5_plan_agent_task_sections_and_durations() -> None:
    result = corpus("zvirb__comandind__.claude-backup-20250820-104328__phase5")
    by_id = streams(result)
    assert len(by_id) == 3
    first = by_id["immediate-deployment-verification-automation"]
    assert [s.agent for s in first.steps] == [
        "deployment-orchestrator", "deployment-orchestrator",
        "monitoring-analyst", "monitoring-analyst",
    ]  # fmt: skip
    assert first.steps[0].instruction == "Verify blue-green deployment transitions"
    assert [s.timeline.expected_s if s.timeline else None for s in by_id.values()] == [
        7200, 5400, 3600,
    ]  # fmt: skip
    # Its own evidence list (5) and the global "Deployment Evidence" group (4).
    assert len(first.evidence) == 9
    assert len(by_id["coordination-network-optimization"].evidence) == 4
    assert "performance-profiler" in by_id["coordination-network-optimization"].team


def test_agent_spawn_streams_teams_weeks_and_dependency_chain() -> None:
    result = corpus("isaacbuz__SWE__AGENT_SPAWN_COMPLETE")
    by_id = streams(result)
    assert list(by_id) == [
        "openapi-tooling-infrastructure", "llm-provider-integration",
        "frontend-security", "quality-documentation",
    ]  # fmt: skip
    tooling = by_id["openapi-tooling-infrastructure"]
    assert tooling.lead == "infrastructure-agent-1"
    assert len(tooling.team) == 5
    assert tooling.timeline is not None and tooling.timeline.expected_s == 14 * 86400
    assert by_id["llm-provider-integration"].depends_on == ["openapi-tooling-infrastructure"]
    assert set(by_id["frontend-security"].depends_on) == {
        "openapi-tooling-infrastructure", "llm-provider-integration",
    }  # fmt: skip
    assert "llm-provider-integration" in by_id["quality-documentation"].depends_on
    # "Agents: 5 (Infrastructure x 3, Backend x 2)" is a head count, never agent names.
    assert len(result.plan.agents) == 20
    assert not any(name[0].isdigit() for name in result.plan.agents)
    assert sum(1 for i in result.report.unmapped if "head count" in i.detail) == 4
    assert result.plan.agents["backend-agent-3"].role == "Provider Architect"


def test_claude_spec_phases_tasks_prerequisites_and_exit_criteria() -> None:
    result = corpus("zircote__claude-spec")
    by_id = streams(result)
    assert list(by_id) == ["scaffold", "commands", "hooks", "worktree", "templates", "integration"]
    assert [(s.agent, s.instruction) for s in by_id["scaffold"].steps] == [
        ("mcp-developer", "Create Plugin Manifest: Create `.claude-plugin/plugin.json` with "
         "correct schema for hooks and commands registration"),
        ("documentation-engineer", "Create Plugin README and Structure: Create directory "
         "structure and README with installation instructions"),
    ]  # fmt: skip
    assert by_id["scaffold"].lead == "mcp-developer"
    assert by_id["commands"].depends_on == ["scaffold"]
    assert by_id["templates"].depends_on == ["commands"]
    assert set(by_id["integration"].depends_on) == {
        "scaffold", "commands", "hooks", "worktree", "templates",
    }  # fmt: skip
    scaffold = by_id["scaffold"]
    assert scaffold.timeline is not None and scaffold.timeline.expected_s == 3600
    assert all(s.gate is not None and s.gate.criteria for s in by_id.values())
    assert "scaffold.manifest_validates_against_claude_code_schema == true" in {
        str(c)
        for c in scaffold.gate.criteria  # type: ignore[union-attr]
    }


def test_the_seed_context_package_is_refused() -> None:
    path = SHARED / "seeds" / "002_bca74af58a4315ce.txt"
    with pytest.raises(PlanInvalid, match="context package") as caught:
        import_markdown(decode_markdown(path.read_bytes())[0], path.name)
    assert caught.value.problems[0].line == 1


def test_the_seed_plan_imports_as_before() -> None:
    path = SHARED / "seeds" / "000_ab24b73426072cb1.txt"
    result = import_markdown(decode_markdown(path.read_bytes())[0], path.name)
    assert result.summary().startswith(
        "4 streams, 10 agents, 20 steps, 12 gate criteria, 12 evidence requirements, 4 rollbacks"
    )
