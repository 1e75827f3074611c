"""Importing Markdown phase plans: the users' seed document and variants made from it.

The seed (``data/000_ab24b73426072cb1.txt``) is a real phase document, mis-encoded as users'
tools leave them (UTF-8 read as cp1252). Variants move, rename and drop its sections, fix its
encoding or give it CRLF line endings; each must import into a plan that validates, with
every line it could not map reported at its real line number.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid
from streams.gates import parse_criterion
from streams.markdown._text import repair_mojibake
from streams.markdown_import import ImportResult, ReportItem, decode_markdown, import_markdown
from streams.model import Plan, StreamSpec

SEED_PATH = Path(__file__).parent / "data" / "000_ab24b73426072cb1.txt"
SEED = SEED_PATH.read_text(encoding="utf-8")
# The same document as its author wrote it: the seed's characters are all cp1252, so
# encoding them back gives the original UTF-8 bytes (an oracle independent of the repair).
CLEAN = SEED.encode("cp1252").decode("utf-8")
SOURCE = "PLAN.md"

IDS = ["redis-authentication", "gpu-optimization", "service-communication", "database-performance"]
MATRIX = {
    "performance-profiler": "cpu",
    "k8s-architecture-specialist": "cpu",
    "schema-database-expert": "io",
    "backend-gateway-expert": "io",
    "security-validator": "io",
    "fullstack-communication-auditor": "network",
    "monitoring-analyst": "network",
    "infrastructure-recovery": "light",
    "webui-architect": "light",
    "langgraph-ollama-analyst": "light",
}


def validates_but_for_drivers(result: ImportResult) -> Plan:
    """The plan of ``result``'s YAML, checked: validation finds only the missing drivers
    (one problem per agent, at its line), exactly those the import reported."""
    with pytest.raises(PlanInvalid) as caught:
        load_plan_text(result.yaml_text, "plan.yaml")
    reasons = [p.reason for p in caught.value.problems]
    assert reasons == [p.reason for p in result.needs_driver]
    assert len(reasons) == len(result.plan.agents)
    assert all(p.line > 0 and "driver" in p.reason for p in caught.value.problems)
    return Plan.model_validate(yaml.safe_load(result.yaml_text))


def imported(text: str) -> ImportResult:
    """Import ``text`` and check that its YAML loads and validates on its own, but for
    the drivers it leaves to the user."""
    result = import_markdown(text, SOURCE)
    assert validates_but_for_drivers(result) == result.plan
    return result


def streams(plan: Plan) -> dict[str, StreamSpec]:
    return {s.id: s for s in plan.streams}


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the line holding the ``nth`` occurrence of ``needle``."""
    index = -1
    for _ in range(nth):
        index = text.index(needle, index + 1)
    return text.count("\n", 0, index) + 1


def section(text: str, heading: str) -> str:
    """The lines of ``text`` from the heading line containing ``heading`` up to (not
    including) the next heading of the same or a higher level."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and heading in line)
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    end = next(
        (
            i
            for i in range(start + 1, len(lines))
            if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level
        ),
        len(lines),
    )
    return "\n".join(lines[start:end]) + "\n"


def without(text: str, heading: str) -> str:
    return text.replace(section(text, heading), "", 1)


def find(items: tuple[ReportItem, ...], pattern: str) -> list[ReportItem]:
    return [i for i in items if re.search(pattern, f"{i.text} {i.detail}")]


@pytest.fixture(scope="module")
def seed() -> ImportResult:
    return imported(SEED)


# -- the seed ----------------------------------------------------------------------------


def test_seed_streams_carry_the_focus_areas_numbers(seed: ImportResult) -> None:
    by_id = streams(seed.plan)
    assert list(by_id) == IDS
    expected = {
        "redis-authentication": ("Redis Authentication", "critical", 0.95, 0.15, 900, 1800),
        "gpu-optimization": ("GPU Optimization", "high", 0.78, 0.22, 2700, 3600),
        "service-communication": ("Service Communication", "medium", 0.85, 0.15, 1800, 2700),
        "database-performance": ("Database Performance", "medium", 0.82, 0.18, 1800, 2700),
    }
    for stream_id, (title, priority, success, risk, expected_s, limit_s) in expected.items():
        stream = by_id[stream_id]
        assert (stream.title, stream.priority) == (title, priority)
        assert (stream.success_probability, stream.risk) == (success, risk)
        assert stream.timeline is not None
        assert (stream.timeline.expected_s, stream.timeline.limit_s) == (expected_s, limit_s)
    assert by_id["redis-authentication"].methodology == "patch"
    assert by_id["gpu-optimization"].current_state == "3 GPUs available with 0-32% utilization"
    assert by_id["database-performance"].expected_improvement == (
        "180ms → <100ms response time (45%+ improvement)"
    )


def test_seed_teams_leads_and_sentence_steps(seed: ImportResult) -> None:
    by_id = streams(seed.plan)
    assert by_id["redis-authentication"].team == [
        "security-validator",
        "backend-gateway-expert",
        "infrastructure-recovery",
        "performance-profiler",
    ]
    assert by_id["service-communication"].team == [
        "fullstack-communication-auditor",
        "backend-gateway-expert",
        "webui-architect",
    ]
    for stream in seed.plan.streams:
        assert stream.lead == stream.team[0]
        assert len(stream.steps) == 5
        assert all(s.agent == stream.lead and s.instruction for s in stream.steps)
        assert stream.depends_on == []
    assert by_id["redis-authentication"].steps[0].instruction == (
        "Update docker-compose.yml with Redis password configuration"
    )
    assert [s.id for s in by_id["database-performance"].steps] == [f"step-{i}" for i in range(1, 6)]
    for stream in seed.plan.streams:
        # Evidence counts only from a step that declares it: the last step declares it all.
        assert [s.evidence for s in stream.steps[:-1]] == [[]] * 4
        assert stream.steps[-1].evidence == [e.id for e in stream.evidence]
    declared = find(seed.report.assumptions, r"last step \(step-5\) declares")
    assert [i.line for i in declared] == [
        line_of(SEED, "5. Monitor for connection stability"),
        line_of(SEED, "5. Monitor GPU utilization"),
        line_of(SEED, "5. Validate communication flow"),
        line_of(SEED, "5. Monitor performance improvements"),
    ]


def test_seed_caps_and_agent_classes_come_from_the_matrix(seed: ImportResult) -> None:
    plan = seed.plan
    assert plan.caps == {"cpu": 2, "io": 3, "network": 2, "light": None}
    assert {name: agent.resource_class for name, agent in plan.agents.items()} == MATRIX
    assert plan.agents["performance-profiler"].role == "GPU optimization, database analysis"
    for agent in plan.agents.values():
        assert agent.driver is None  # no fake driver: validate names each one to fill in
    assert plan.resources == ["redis", "database", "api-gateway"]
    assert plan.plan == "phase-2-ml-enhanced-strategic-intelligence-planning"


def test_seed_groups_and_gate_thresholds_come_from_the_architecture(seed: ImportResult) -> None:
    by_id = streams(seed.plan)
    groups = {sid: s.group for sid, s in by_id.items()}
    assert groups == {
        "redis-authentication": "stream-1-critical-path",
        "gpu-optimization": "stream-2-performance-optimization",
        "service-communication": "stream-3-communication-enhancement",
        "database-performance": "stream-2-performance-optimization",
    }
    thresholds = {sid: s.gate.threshold for sid, s in by_id.items() if s.gate}
    assert thresholds == {
        "redis-authentication": 0.95,
        "gpu-optimization": 0.8,
        "service-communication": 0.85,
        "database-performance": 0.8,
    }


def test_seed_gate_criteria_are_in_the_gate_grammar(seed: ImportResult) -> None:
    by_id = streams(seed.plan)
    criteria = {sid: [str(c) for c in s.gate.criteria] for sid, s in by_id.items() if s.gate}
    assert all(len(c) == 3 for c in criteria.values())
    for texts in criteria.values():
        for text in texts:
            parse_criterion(text)  # raises on anything the grammar rejects
    assert "redis.noauth_errors == 0" in criteria["redis-authentication"]
    assert "gpu.utilization_pct > 50" in criteria["gpu-optimization"]
    assert "gpu.ml_processing_performance_improvement_pct > 200" in criteria["gpu-optimization"]
    assert "db.response_ms < 100" in criteria["database-performance"]
    assert "service.discovery_efficiency_pct > 90" in criteria["service-communication"]


def test_seed_evidence_and_rollback(seed: ImportResult) -> None:
    by_id = streams(seed.plan)
    assert [e.id for e in by_id["redis-authentication"].evidence] == [
        "docker-logs-redis",
        "service-logs",
        "redis-cli-auth-command-validation",
    ]
    assert [e.id for e in by_id["gpu-optimization"].evidence] == [
        "nvidia-smi-output",
        "docker-stats",
        "ollama-performance-benchmarks",
    ]
    assert by_id["gpu-optimization"].evidence[0].description == (
        "nvidia-smi output showing GPU utilization >50%"
    )
    budgets = {sid: s.rollback.budget for sid, s in by_id.items() if s.rollback}
    assert budgets == {
        "redis-authentication": 120,
        "gpu-optimization": 300,
        "service-communication": 180,
        "database-performance": 240,
    }
    redis = by_id["redis-authentication"].rollback
    assert redis is not None
    assert [s.instruction for s in redis.steps] == [
        "Remove requirepass from redis.conf",
        "Restart Redis container without auth",
        "Update service connections to remove passwords",
        "Validate service connectivity",  # "(2-minute recovery)" became the budget
    ]
    assert [s.id for s in redis.steps] == [f"rollback-{i}" for i in range(1, 5)]


def test_seed_report_names_what_was_not_mapped_at_its_lines(seed: ImportResult) -> None:
    report = seed.report
    where = {(i.line, i.end_line) for i in report.unmapped}
    assert (line_of(SEED, "Average Success Rate"),) * 2 in where
    historical = line_of(SEED, "### Historical Pattern Integration")
    assert (historical + 1, historical + 4) in where
    risk_summary = line_of(SEED, "HIGH RISK AREAS:")
    assert (risk_summary, line_of(SEED, "Evidence-based validation with concrete")) in where
    checklist = line_of(SEED, "- [ ] All agent teams")
    assert (checklist, line_of(SEED, "- [ ] Historical pattern integration")) in where
    # Risk levels map to the streams' risk_level now, so their lines are not unmapped.
    assert not find(report.unmapped, "risk level")
    assert [s.risk_level for s in seed.plan.streams] == ["low", "medium", "low", "low"]
    # Each stream's context package size is its team's token limit (the smallest wins).
    packages = [i for i in report.mapped if "token_limit" in i.detail]
    assert [i.line for i in packages] == [
        line_of(SEED, f"{name} Context Package (")
        for name in ("Redis Authentication", "GPU Optimization", "Service Communication",
                     "Database Performance")
    ]  # fmt: skip
    limits = {name: agent.token_limit for name, agent in seed.plan.agents.items()}
    assert limits["security-validator"] == 3500
    assert limits["k8s-architecture-specialist"] == 4000
    assert limits["webui-architect"] == 3200
    assert limits["schema-database-expert"] == 3800
    assert limits["performance-profiler"] == 3500


def test_seed_report_lines_hold_the_text_reported(seed: ImportResult) -> None:
    clean_lines = CLEAN.split("\n")
    items = (*seed.report.mapped, *seed.report.unmapped, *seed.report.assumptions)
    checked = 0
    for item in items:
        if not item.line or not item.text:
            continue
        line = " ".join(clean_lines[item.line - 1].replace("**", "").split())
        assert item.text.replace("**", "").removesuffix("...") in line, (item, line)
        checked += 1
    assert checked > 100


def test_seed_report_says_what_was_assumed(seed: ImportResult) -> None:
    report = seed.report
    assumed = find(report.assumptions, "read as no dependencies")
    assert [i.line for i in assumed] == [
        line_of(SEED, "None - can execute immediately"),
        line_of(SEED, "Minimal - can run parallel"),
        line_of(SEED, "None - independent of other focus areas"),
    ]
    assert find(report.assumptions, "no agent has a driver")
    assert len(find(report.assumptions, r"lead '.*' \(first of the team\)")) == 4
    assert report.repaired_lines[:3] == (1, 3, 9)


def test_seed_yaml_comments_name_the_source_lines(seed: ImportResult) -> None:
    text = seed.yaml_text
    assert f"# line {line_of(SEED, '### 2. GPU OPTIMIZATION')}: 2. GPU OPTIMIZATION" in text
    header = text.split("\nversion: 1\n")[0]
    assert "# Not mapped" in header
    assert f"#   {line_of(SEED, 'Average Success Rate')}: 'Average Success Rate: 85%'" in header
    assert "# Assumed" in header
    assert "ðŸ" not in text and "â”" not in text
    rendered = seed.report.render()
    assert f"{SOURCE}:{line_of(SEED, 'Overall Risk Assessment')}:" in rendered


def test_seed_shows_in_analyze(seed: ImportResult) -> None:
    from orchestrator.analysis import analyze, render_analysis

    shown = render_analysis(analyze(seed.plan, {}))
    for title, success in [("Redis Authentication", "95%"), ("GPU Optimization", "78%")]:
        [row] = [line for line in shown.splitlines() if line.startswith(title)]
        assert success in row


def test_the_repair_restores_the_authors_text() -> None:
    assert [repair_mojibake(line) for line in SEED.split("\n")] == CLEAN.split("\n")
    assert repair_mojibake("### ðŸ§  PLAN") == "### \U0001f9e0 PLAN"
    # The no-break space ending an emoji, turned into a plain space by copy and paste.
    assert repair_mojibake("# ðŸ§  PHASE") == "# \U0001f9e0 PHASE"


# -- variants ----------------------------------------------------------------------------


def test_correctly_encoded_input_imports_the_same_plan(seed: ImportResult) -> None:
    result = imported(CLEAN)
    assert result.plan == seed.plan
    assert result.report.repaired_lines == ()
    assert result.report.unmapped == seed.report.unmapped


def test_crlf_line_endings_import_the_same_plan_and_lines(seed: ImportResult) -> None:
    result = imported(SEED.replace("\n", "\r\n"))
    assert result.plan == seed.plan
    assert result.report.unmapped == seed.report.unmapped


def test_rollback_before_the_focus_areas(seed: ImportResult) -> None:
    rollback = section(SEED, "### Rollback Procedures")
    moved = SEED.replace(rollback, "", 1)
    moved = moved.replace("## ðŸš€ FOCUS AREA", rollback + "\n## ðŸš€ FOCUS AREA", 1)
    result = imported(moved)
    assert result.plan == seed.plan
    # Report lines follow the move: the checklist did not move, the conflict-prevention
    # section (between the focus areas and the rollback procedures) did.
    where = {i.line for i in result.report.unmapped}
    assert line_of(moved, "- [ ] All agent teams") in where
    conflict = "**Container Coordination System**"
    assert line_of(moved, conflict) in where
    assert line_of(moved, conflict) != line_of(SEED, conflict)


def test_every_section_shuffled_still_imports_the_same_plan(seed: ImportResult) -> None:
    h2 = [s for s in re.split(r"(?m)^(?=## )", SEED) if s.startswith("## ")]
    preamble = SEED[: SEED.index("## ")]
    reordered = preamble + "".join(reversed(h2))
    assert imported(reordered).plan == seed.plan


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("## ðŸš€ FOCUS AREA STRATEGIC PLANS", "## Focus Areas"),
        ("### Resource Allocation Matrix", "### Resource Matrix"),
        ("### Quantitative Success Criteria", "### Success Criteria"),
        ("### Parallel Execution Architecture", "### Execution Streams"),
        ("### Rollback Procedures", "### Rollback"),
        ("### Evidence-Based Validation Requirements", "### Mandatory Evidence"),
    ],
)
def test_renamed_headings_import_the_same_plan(seed: ImportResult, old: str, new: str) -> None:
    result = imported(SEED.replace(old, new, 1))
    assert result.plan == seed.plan


def test_without_code_fences_the_same_plan(seed: ImportResult) -> None:
    text = re.sub(r"(?m)^```.*$", "", SEED)
    assert imported(text).plan == seed.plan


def test_bulleted_group_names_in_the_rollback_section(seed: ImportResult) -> None:
    text = re.sub(r"(?m)^(\w[\w ]* Rollback):$", r"- **\1**:", SEED)
    assert "- **GPU Optimization Rollback**:" in text
    assert imported(text).plan == seed.plan


def test_no_resource_matrix_gives_default_caps_and_says_so() -> None:
    result = imported(without(SEED, "### Resource Allocation Matrix"))
    assert result.plan.caps == {"cpu": 2, "io": 3, "network": 2, "light": None, "unclassified": 1}
    assert {a.resource_class for a in result.plan.agents.values()} == {"unclassified"}
    assert find(result.report.assumptions, "no resource allocation matrix: default caps")
    unclassified = find(result.report.assumptions, "not in the resource allocation matrix")
    assert {i.text for i in unclassified} == set(MATRIX)


def test_an_agent_missing_from_the_matrix_gets_the_default_class() -> None:
    text = SEED.replace("  - webui-architect (frontend optimization)\n", "", 1)
    result = imported(text)
    assert result.plan.agents["webui-architect"].resource_class == "unclassified"
    assert result.plan.caps["unclassified"] == 1
    [item] = find(result.report.assumptions, "not in the resource allocation matrix")
    assert item.line == line_of(text, "**Agent Team**: fullstack-communication-auditor")


def test_no_rollback_procedures_means_no_rollback() -> None:
    text = without(SEED, "### Rollback Procedures")
    result = imported(text)
    assert all(s.rollback is None for s in result.plan.streams)
    [item] = find(result.report.unmapped, "no rollback procedure")
    assert item.line == line_of(text, "**Rollback Time**: 2 minutes")


def test_no_architecture_means_no_groups_and_every_criterion_required() -> None:
    result = imported(without(SEED, "### Parallel Execution Architecture"))
    assert all(s.group is None for s in result.plan.streams)
    assert all(s.gate is not None and s.gate.threshold == 1.0 for s in result.plan.streams)
    assert len(find(result.report.assumptions, "no success gate threshold")) == 4


def test_no_success_criteria_means_no_gate_and_says_so() -> None:
    result = imported(without(SEED, "### Quantitative Success Criteria"))
    assert all(s.gate is None for s in result.plan.streams)
    dropped = find(result.report.unmapped, "gate threshold but no criterion")
    assert len(dropped) == 4


def test_criteria_in_words_that_cannot_be_measured_are_reported() -> None:
    text = SEED.replace("  - Error rate reduction >50%", "  - Communication flow documented", 1)
    text = text.replace("  - Service discovery efficiency >90%", "  - 5% error rate", 1)
    result = imported(text)
    gate = streams(result.plan)["service-communication"].gate
    assert gate is not None and [str(c) for c in gate.criteria] == [
        "service.api_response_time_improvement_pct > 20"
    ]
    reasons = {i.line: i.detail for i in result.report.unmapped}
    assert "no measurable comparison" in reasons[line_of(text, "Communication flow documented")]
    assert "floor or a ceiling" in reasons[line_of(text, "  - 5% error rate")]


def test_named_dependencies_become_depends_on() -> None:
    text = SEED.replace(
        "**Dependencies**: None - independent of other focus areas",
        "**Dependencies**: After Redis Authentication completes",
        1,
    )
    text = text.replace(
        "Dependencies: Can execute parallel with Stream 1", "Dependencies: After Stream 1", 1
    )
    by_id = streams(imported(text).plan)
    assert by_id["service-communication"].depends_on == ["redis-authentication"]
    assert by_id["gpu-optimization"].depends_on == ["redis-authentication"]
    assert by_id["database-performance"].depends_on == ["redis-authentication"]
    assert by_id["redis-authentication"].depends_on == []


def test_numbered_focus_areas_without_priority_under_a_focus_heading() -> None:
    text = SEED.replace("### 3. SERVICE COMMUNICATION (MEDIUM PRIORITY)", "### 3. Service Comms")
    result = imported(text)
    stream = streams(result.plan)["service-comms"]
    assert stream.priority == "medium"
    assert stream.title == "Service Comms"
    [item] = find(result.report.assumptions, "no priority: medium")
    assert item.line == line_of(text, "### 3. Service Comms")


def test_sub_headings_inside_a_focus_area_continue_it() -> None:
    text = SEED.replace("**Implementation Sequence**:\n1. Analyze current GPU", "#### Steps\n"
                        "1. Analyze current GPU", 1)  # fmt: skip
    by_id = streams(imported(text).plan)
    assert len(by_id["gpu-optimization"].steps) == 5


def test_a_document_without_focus_areas_is_refused() -> None:
    with pytest.raises(PlanInvalid, match=r"no streams found: looked for .*Stream N: NAME"):
        import_markdown("# Plan\n\nNothing to do here.\n", SOURCE)


def test_an_unclosed_code_block_is_read_to_the_end_and_reported() -> None:
    text = SEED.rstrip("\n").rsplit("```", 1)[0] + "\n```yaml\nstray: [\n"
    result = imported(text)
    assert find(result.report.assumptions, "never closed")


PHASE3 = textwrap.dedent("""\
    # Phase 3: Hardening

    ## Overview
    Harden the stack.

    ## Decision Matrix
    | Focus Area | Success Probability | Risk Level | Timeline | Methodology |
    |---|---|---|---|---|
    | TLS Rollout | 90% | Low (10%) | 1-2 hours | Patch |
    | Cache Warmup | 70% | High (30%) | 20-40 min | Config |

    ## 1. TLS ROLLOUT (High Priority)
    ```yaml
    Methodology: Patch approach
    Success Probability: 88%
    Timeline: 1-2 hours
    Dependencies: none
    Agent Team: sec-agent, net-agent (lead), new-agent
    ```
    #### Implementation Sequence
    1. Issue certificates
    2. Switch listeners to TLS

    ## 2. CACHE WARMUP (Low Priority)
    - **Risk Assessment**: High
    - **Dependencies**: after TLS Rollout is live
    **Agent Team**: cache-agent

    ## Concurrency
    **CPU-Intensive Agents (Max 1 concurrent):**
    - cache-agent (warmup)
    **Network-Intensive Agents (Max 4 concurrent):**
    - net-agent
    - sec-agent (certs)

    ## Success Criteria
    #### TLS Rollout
    - Handshake failures below 1%
    - p99 latency at most 250 ms
    #### Cache Warmup
    - Hit ratio >= 95%
    - Everything feels faster
    """)


def test_another_authors_layout_imports_too() -> None:
    """Pipe tables, a focus area in a fenced block, sub-headings as group names, bold class
    headers outside a fence, a lead marked in the team, a dependency by name."""
    result = imported(PHASE3)
    by_id = streams(result.plan)
    tls, cache = by_id["tls-rollout"], by_id["cache-warmup"]
    assert (tls.title, tls.priority, tls.success_probability, tls.risk) == (
        "TLS Rollout", "high", 0.88, 0.1,
    )  # fmt: skip
    assert tls.lead == "net-agent"
    assert [s.instruction for s in tls.steps] == ["Issue certificates", "Switch listeners to TLS"]
    assert tls.gate is not None
    assert [str(c) for c in tls.gate.criteria] == [
        "tls.handshake_failures_pct < 1",
        "tls.p99_latency_ms <= 250",
    ]
    assert cache.depends_on == ["tls-rollout"]
    assert (cache.risk, cache.methodology) == (0.3, "config")  # filled from the table
    assert result.plan.caps == {"cpu": 1, "network": 4, "unclassified": 1}
    assert result.plan.agents["new-agent"].resource_class == "unclassified"
    unmapped = {i.line: i.detail for i in result.report.unmapped}
    assert "differs from the focus area's 0.88" in unmapped[line_of(PHASE3, "| TLS Rollout")]
    assert "no measurable comparison" in unmapped[line_of(PHASE3, "Everything feels")]
    assert "no percentage" in unmapped[line_of(PHASE3, "**Risk Assessment**: High")]
    placeholder = find(result.report.assumptions, "placeholder step")
    assert [i.line for i in placeholder] == [line_of(PHASE3, "## 2. CACHE WARMUP")]


def test_streams_waiting_for_each_other_lose_the_wait_that_closes_the_circle() -> None:
    text = PHASE3.replace("Dependencies: none", "Dependencies: after Cache Warmup", 1)
    result = imported(text)
    by_id = streams(result.plan)
    assert by_id["tls-rollout"].depends_on == ["cache-warmup"]
    assert by_id["cache-warmup"].depends_on == []
    [item] = find(result.report.unmapped, "closes a circle")
    assert item.line == line_of(text, "after TLS Rollout is live")


def test_the_report_is_json_and_its_items_are_in_the_yaml_header(seed: ImportResult) -> None:
    data = json.loads(json.dumps(seed.report.as_dict()))
    assert data["source"] == SOURCE
    assert len(data["unmapped"]) == len(seed.report.unmapped)
    header = seed.yaml_text.split("\nversion: 1\n")[0]
    for item in (*seed.report.unmapped, *seed.report.assumptions):
        assert f"#   {item.where()}: " in header
    assert seed.summary().startswith("4 streams, 10 agents, 20 steps, 12 gate criteria, ")


def test_decoding_a_file_saved_as_cp1252_or_utf8() -> None:
    assert decode_markdown(CLEAN.encode("utf-8")) == (CLEAN, "utf-8")
    assert decode_markdown(b"\xef\xbb\xbf# T\n") == ("# T\n", "utf-8")
    cafe = "# Café \u2013 plan\n"
    assert decode_markdown(cafe.encode("cp1252")) == (cafe, "cp1252")
    assert decode_markdown(b"\x81\x9d\xff") == ("\x81\x9d\xff", "cp1252")


# -- properties --------------------------------------------------------------------------


def _garble(text: str) -> str:
    """``text`` as a tool that reads UTF-8 as cp1252 (latin-1 for undefined bytes) shows it."""
    out = []
    for byte in text.encode("utf-8", "surrogatepass"):
        try:
            out.append(bytes([byte]).decode("cp1252"))
        except UnicodeDecodeError:
            out.append(chr(byte))
    return "".join(out)


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=60))
def test_repair_undoes_the_misreading(text: str) -> None:
    assert repair_mojibake(_garble(text)) == text


_FOCUS = """# Plan

### 1. ALPHA WORK (HIGH PRIORITY)
- **Risk Assessment**: Low ({risk}%) - routine
- **Success Probability**: {success}% (estimate)
- **Timeline**: {low}-{high} {unit}

**Agent Team**: alpha-agent

**Implementation Sequence**:
1. Do the alpha work

### Rollback Procedures
```yaml
Alpha Work Rollback:
  1. Undo the alpha work ({budget}-{budget_unit} recovery)
```
"""
_SECONDS = {"minutes": 60, "hours": 3600, "seconds": 1, "min": 60, "h": 3600}


@settings(max_examples=40, deadline=None)
@given(
    success=st.integers(0, 100),
    risk=st.integers(0, 100),
    low=st.integers(1, 500),
    extra=st.integers(0, 500),
    unit=st.sampled_from(sorted(_SECONDS)),
    budget=st.integers(1, 90),
    budget_unit=st.sampled_from(["minute", "second", "hour"]),
)
def test_percentages_and_durations_round_trip(
    success: int, risk: int, low: int, extra: int, unit: str, budget: int, budget_unit: str
) -> None:
    text = _FOCUS.format(
        risk=risk, success=success, low=low, high=low + extra, unit=unit, budget=budget,
        budget_unit=budget_unit,
    )  # fmt: skip
    [stream] = imported(text).plan.streams
    assert stream.success_probability == pytest.approx(success / 100)
    assert stream.risk == pytest.approx(risk / 100)
    assert stream.timeline is not None
    assert stream.timeline.expected_s == low * _SECONDS[unit]
    assert stream.timeline.limit_s == (low + extra) * _SECONDS[unit]
    assert stream.rollback is not None
    assert stream.rollback.budget == budget * {"minute": 60, "second": 1, "hour": 3600}[budget_unit]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, SEED.count("\n")),
            st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
        ),
        max_size=4,
    )
)
def test_stray_lines_anywhere_never_break_the_import(inserts: list[tuple[int, str]]) -> None:
    lines = SEED.split("\n")
    for at, stray in sorted(inserts, reverse=True):
        lines.insert(at, stray.replace("\n", " ").replace("\r", " "))
    try:
        result = import_markdown("\n".join(lines), SOURCE)
    except PlanInvalid as error:  # only when a stray line took every focus area away
        assert "no streams found" in str(error) or "context package" in str(error)
        return
    validates_but_for_drivers(result)
    assert all(1 <= i.line <= len(lines) for i in result.report.unmapped if i.line)
