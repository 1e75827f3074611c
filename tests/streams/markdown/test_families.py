"""Each family of phase-plan shapes, in small documents written for the tests."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid
from streams.markdown_import import ImportResult, import_markdown
from streams.model import Plan, StreamSpec


def imp(text: str) -> ImportResult:
    """Import ``text``; its YAML must fail validation only for the drivers left unset."""
    result = import_markdown(textwrap.dedent(text), "PLAN.md")
    with pytest.raises(PlanInvalid) as caught:
        load_plan_text(result.yaml_text, "plan.yaml")
    assert [p.reason for p in caught.value.problems] == [p.reason for p in result.needs_driver]
    assert all("driver" in p.reason for p in caught.value.problems)
    assert Plan.model_validate(yaml.safe_load(result.yaml_text)) == result.plan
    return result


def by_id(result: ImportResult) -> dict[str, StreamSpec]:
    return {s.id: s for s in result.plan.streams}


def agents_of(stream: StreamSpec) -> list[str]:
    return [step.agent or "" for step in stream.steps]


# -- stream headings and priorities ----------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "stream_id", "priority"),
    [
        ("### 1. PAYMENTS (CRITICAL PRIORITY)", "payments", "critical"),
        ("### Stream 2: Payments (P0)", "payments", "critical"),
        ("### Stream 2: Payments (CRITICAL)", "payments", "critical"),
        ("## Phase 1: Payments (Priority: High)", "payments", "high"),
        ("## Workstream A - Payments [P1]", "payments", "high"),
        ("### Stream 3: Payments - HIGH PRIORITY", "payments", "high"),
        ("### Payments Stream (Priority 2)", "payments", "medium"),
        ("## Track 4: Payments [P3]", "payments", "low"),
        ("## Phase 2: Payments", "payments", "medium"),
    ],
)
def test_stream_headings_and_priorities(heading: str, stream_id: str, priority: str) -> None:
    result = imp(
        f"# Plan\n\n{heading}\n**Lead**: payments-engineer\n**Steps**:\n1. Charge the card\n"
    )
    (stream,) = result.plan.streams
    assert (stream.id, stream.priority) == (stream_id, priority)
    assert [s.instruction for s in stream.steps] == ["Charge the card"]


def test_stream_blocks_in_a_yaml_fence_under_phases() -> None:
    result = imp(
        """\
        # Plan
        ### Phase 3: Research
        ```yaml
        Database Stream:
          - schema-database-expert: Analyse the schema
        ```
        ### Phase 5: Implementation
        ```yaml
        Backend Stream (Priority 1):
          - backend-gateway-expert: Fix project CRUD operations
          - security-validator: Validate authentication flow
        Documentation Stream (Priority 3):
          - documentation-specialist: Rebuild the agent docs
        ```
        """
    )
    streams = by_id(result)
    assert list(streams) == ["database", "backend", "documentation"]
    backend = streams["backend"]
    assert backend.priority == "high"
    assert streams["documentation"].priority == "low"
    assert agents_of(backend) == ["backend-gateway-expert", "security-validator"]
    assert backend.group == "phase-5"
    assert backend.depends_on == ["database"]  # phase 5 comes after phase 3


def test_a_table_of_streams() -> None:
    result = imp(
        """\
        # Plan
        | Stream | Lead | Agents | Priority | Timeline |
        |---|---|---|---|---|
        | Auth hardening | security-validator | security-validator, backend-dev | P0 | 2 days |
        | Docs | docs-writer | docs-writer | low | 3h |
        """
    )
    streams = by_id(result)
    assert list(streams) == ["auth-hardening", "docs"]
    auth = streams["auth-hardening"]
    assert (auth.priority, auth.lead, auth.team) == (
        "critical",
        "security-validator",
        ["security-validator", "backend-dev"],
    )
    assert auth.timeline is not None and auth.timeline.expected_s == 2 * 86400


# -- who does what ---------------------------------------------------------------------


def test_each_step_goes_to_the_agent_named_for_it_else_the_lead() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Payments
        **Lead**: payments-lead
        **Team**: payments-lead, card-expert

        - card-expert: Tokenise the card numbers
        - **fraud-analyst**: Tune the fraud rules

        #### Task 1.1: Write the refund endpoint
        - **Agent**: Refund Engineer
        - **Estimated Effort**: 2 hours

        #### Task 1.2: Review everything
        - **Estimated Effort**: 30 minutes

        #### Performance Profiler Tasks
        - Profile the checkout path
        """
    )
    (stream,) = result.plan.streams
    assert stream.lead == "payments-lead"
    assert agents_of(stream) == [
        "card-expert",
        "fraud-analyst",
        "refund-engineer",
        "payments-lead",  # Task 1.2 names nobody: the lead does it
        "performance-profiler",
    ]
    assert set(stream.team) == {
        "payments-lead", "card-expert", "fraud-analyst", "refund-engineer", "performance-profiler",
    }  # fmt: skip
    assert stream.steps[2].instruction == "Write the refund endpoint"


def test_team_head_counts_never_become_agents() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Tooling
        **Agents**: 5 (Infrastructure \u00d7 3, Backend \u00d7 2)
        **Team**:
        1. **Infrastructure Agent 1** - "OpenAPI Architect" (Lead)
        2. **Backend Agent 1** - "TypeScript Wizard"

        **Deliverables**:
        - Tool registry
        """
    )
    (stream,) = result.plan.streams
    assert stream.team == ["infrastructure-agent-1", "backend-agent-1"]
    assert stream.lead == "infrastructure-agent-1"
    assert result.plan.agents["backend-agent-1"].role == "TypeScript Wizard"
    assert [s.instruction for s in stream.steps] == ["Deliver Tool registry"]
    (count,) = [i for i in result.report.unmapped if "head count" in i.detail]
    assert count.line == 3
    assert not any(
        "infrastructure-x" in name or name.startswith("5") for name in result.plan.agents
    )


def test_agent_task_sections_with_code_take_the_docstrings_as_steps() -> None:
    result = imp(
        '''\
        # Plan
        ## Phase 1: Deploy (2 hours)
        ### Deployment Orchestrator Tasks
        ```python
        class X:
            def verify(self):
                """Verify blue-green deployment transitions"""
                - Check states
        ```
        '''
    )
    (stream,) = result.plan.streams
    assert [(s.agent, s.instruction) for s in stream.steps] == [
        ("deployment-orchestrator", "Verify blue-green deployment transitions")
    ]
    assert stream.timeline is not None and stream.timeline.expected_s == 7200


# -- order and time --------------------------------------------------------------------


def test_prerequisites_depends_on_blocked_by_and_estimates() -> None:
    result = imp(
        """\
        # Plan
        ## Phase 1: Scaffold
        **Prerequisites**: None
        **Estimate**: 3h
        1. Create the layout

        ## Phase 2: Commands
        **Prerequisites**: Phase 1 complete
        **Timeline**: Week 1-2
        1. Write the commands

        ## Phase 3: Release
        **Blocked by**: Phase 2
        **Duration**: 2-3 days
        1. Ship it
        """
    )
    streams = by_id(result)
    assert streams["commands"].depends_on == ["scaffold"]
    assert streams["release"].depends_on == ["commands"]
    timelines = {sid: s.timeline for sid, s in streams.items()}
    assert timelines["scaffold"] is not None and timelines["scaffold"].expected_s == 3 * 3600
    assert timelines["commands"] is not None and timelines["commands"].expected_s == 14 * 86400
    release = timelines["release"]
    assert release is not None and (release.expected_s, release.limit_s) == (2 * 86400, 3 * 86400)


def test_a_dependency_chain_section() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Core
        1. Build core
        ### Stream 2: Api
        1. Build api
        ### Stream 3: Ui
        1. Build ui

        ## Critical Path & Dependencies
        ```
        Stream 1 (Week 1-2)
          ↓ Issue #9
        Stream 2 (Week 2-4)
        ```
        1. **Stream 3 blocked on Stream 1 & 2**
        """
    )
    streams = by_id(result)
    assert streams["api"].depends_on == ["core"]
    assert streams["ui"].depends_on == ["core", "api"]


def test_a_wait_that_closes_a_circle_is_left_out_and_reported() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Core
        **Depends on**: Stream 2
        1. Build core
        ### Stream 2: Api
        **Depends on**: Stream 1
        1. Build api
        """
    )
    assert sum(len(s.depends_on) for s in result.plan.streams) == 1
    assert any("closes a circle" in i.detail for i in result.report.unmapped)


# -- gates, limits, token limits -------------------------------------------------------


def test_exit_criteria_become_gates() -> None:
    result = imp(
        """\
        # Plan
        ## Phase 1: Restore
        1. Restore the snapshot
        ### Phase 1 Exit Criteria
        - Snapshot checksum mismatches: 0
        - Restore time < 20 minutes
        - [x] Service answers health checks
        """
    )
    (stream,) = result.plan.streams
    assert stream.gate is not None
    assert [str(c) for c in stream.gate.criteria] == [
        "restore.snapshot_checksum_mismatches == 0",
        "restore.time_min < 20",
        "restore.service_answers_health_checks == true",
    ]


def test_concurrency_and_token_limits_in_prose_and_yaml() -> None:
    text = """\
        # Plan
        Run at most 2 parallel agents. Context packages: max 2500 tokens.
        ### Stream 1: Payments
        - card-expert: Tokenise
        ### Stream 2: Search
        - search-expert: Index
        ```yaml
        Payments Context Package (1,500 tokens):
          - card data rules
        ```
        """
    result = imp(text)
    assert result.plan.caps == {"agents": 2}
    assert result.plan.defaults.token_limit == 2500
    assert result.plan.agents["card-expert"].token_limit == 1500
    assert result.plan.agents["search-expert"].token_limit is None
    yaml_form = imp(text.replace("Run at most 2 parallel agents.", "max_concurrent: 3"))
    assert yaml_form.plan.caps == {"agents": 3}


# -- what is not a plan, and partial imports --------------------------------------------


def test_a_context_package_is_refused_saying_what_it_is() -> None:
    with pytest.raises(PlanInvalid, match="context package") as caught:
        import_markdown(
            "# Strategic Context Package - Deploy\n**Token Limit**: 3000 tokens\n\n"
            "### Targets (CRITICAL Priority)\n1. **chat-service** - Port 8007\n",
            "PKG.md",
        )
    assert caught.value.problems[0].line == 1
    assert caught.value.problems[0].fix


def test_nothing_found_lists_the_shapes_looked_for() -> None:
    with pytest.raises(PlanInvalid) as caught:
        import_markdown("# Notes\n\nSome prose.\n\n- a list\n", "NOTES.md")
    reason = caught.value.problems[0].reason
    for shape in ("### Stream N: NAME", "## Phase N: NAME", "NAME Stream (Priority N):", "table"):
        assert shape in reason


def test_partial_import_reports_what_it_left_with_line_numbers() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Core
        1. Build core
        **Budget**: 10k EUR

        ## Stakeholders
        Alice and Bob sign off.
        """
    )
    unmapped = {(i.line, i.text) for i in result.report.unmapped}
    assert (4, "**Budget**: 10k EUR") in unmapped
    assert any(line == 7 for line, _ in unmapped)


def test_a_global_criteria_table_and_groups_keyed_by_stream() -> None:
    result = imp(
        """\
        # Plan
        ### Stream 1: Core
        1. Build core
        ### Stream 2: Api
        1. Build api

        ## Success Criteria
        | Stream | Criterion |
        |---|---|
        | Core | Error rate < 1% |
        | Api | p95 latency < 200ms; Zero failed deploys |

        ## Success Metrics
        **Core**:
        - Build failures: 0
        **Production Stability**:
        - all good
        """
    )
    gates = {s.id: [str(c) for c in s.gate.criteria] if s.gate else [] for s in result.plan.streams}
    assert gates == {
        "core": ["core.error_rate_pct < 1", "core.build_failures == 0"],
        "api": ["api.p95_latency_ms < 200", "api.failed_deploys == 0"],
    }
    left = {(i.line, i.end_line) for i in result.report.unmapped}
    assert left == {(16, 17)}  # a group that names no stream


def test_resource_classes_in_a_yaml_block() -> None:
    result = imp(
        """\
        # Plan
        ```yaml
        resource_classes:
          cpu: 2
          light: null
        agent_classes:
          cpu: [perf-profiler]
          light: [docs-writer]
        ```
        ### Stream 1: Core
        - perf-profiler: Profile the hot path
        - docs-writer: Document it
        - other-expert: Something else
        """
    )
    assert result.plan.caps == {"cpu": 2, "light": None, "unclassified": 1}
    classes = {name: agent.resource_class for name, agent in result.plan.agents.items()}
    assert classes == {
        "perf-profiler": "cpu",
        "docs-writer": "light",
        "other-expert": "unclassified",
    }


def test_a_table_of_tasks_with_an_agent_column() -> None:
    result = imp(
        """\
        # Plan
        ### Stream A: Payments (P1)
        **Owner**: payments-lead

        | Task | Agent | Estimate |
        |---|---|---|
        | Build the API | backend-dev | 2h |
        | Review it | | 30 minutes |
        """
    )
    (stream,) = result.plan.streams
    assert [(s.agent, s.instruction) for s in stream.steps] == [
        ("backend-dev", "Build the API"),
        ("payments-lead", "Review it"),  # no agent named: the lead
    ]
    assert stream.timeline is not None and stream.timeline.expected_s == 2.5 * 3600
    assert result.report.unmapped == ()


def test_agent_lines_in_prose_blocks_with_code_names_and_arrows() -> None:
    result = imp(
        """\
        # Plan
        ## Phase 4: Parallel Execution
        **Security Stream (Priority 1):**
        - security-validator: Audit token handling
        - `monitoring-analyst`: Watch alert volume

        **Performance Stream (Priority 2):**
        - performance-profiler \u2192 Profile the GPU path
        - **Team Lead**: performance-profiler
        """
    )
    streams = {s.id: s for s in result.plan.streams}
    assert [(s.agent, s.instruction) for s in streams["security"].steps] == [
        ("security-validator", "Audit token handling"),
        ("monitoring-analyst", "Watch alert volume"),
    ]
    performance = streams["performance"]
    assert [(s.agent, s.instruction) for s in performance.steps] == [
        ("performance-profiler", "Profile the GPU path"),
    ]
    assert performance.lead == "performance-profiler"
    assert "team-lead" not in result.plan.agents


def test_an_unnumbered_priority_heading_with_a_stream_shape_is_not_a_focus_area() -> None:
    result = imp(
        "# Plan\n### Database Stream (HIGH PRIORITY)\n"
        "- schema-database-expert: Add the index\n- **Agent Team**: schema-database-expert\n"
    )
    (stream,) = result.plan.streams
    assert (stream.id, stream.priority) == ("database", "high")
    assert [(s.agent, s.instruction) for s in stream.steps] == [
        ("schema-database-expert", "Add the index")
    ]
