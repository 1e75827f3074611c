"""Fuzzing ``orchestrator import``: whatever the document, the importer either writes a plan
that validates but for the drivers it leaves unset, or refuses with a positioned
PlanInvalid; never a traceback. Time is bounded by the suite's per-test timeout
(pytest-timeout, pyproject): adversarial inputs below would hang a backtracking regex."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid
from streams.markdown_import import decode_markdown, import_markdown
from streams.model import Plan

# Pieces of every shape the importer reads, to be shuffled, cut and mixed with noise.
FRAGMENTS = [
    "# Plan",
    "## Phase 1: Scaffold (2 hours)",
    "## Phase 2: Build",
    "### Stream 1: Core (P0)",
    "### Stream 2: Api [P1]",
    "### 1. REDIS AUTH (CRITICAL PRIORITY)",
    "Backend Stream (Priority 1):",
    "  - backend-gateway-expert: Fix CRUD",
    "- security-validator: Validate auth",
    "**Lead**: api-engineer",
    "**Team**: 5 (Infrastructure x 3, Backend x 2)",
    "**Team**:",
    '1. **Infrastructure Agent 1** - "Architect" (Lead)',
    "#### Task 1.1: Write it",
    "- **Agent**: Load Tester",
    "- **Estimated Effort**: 30 minutes",
    "**Prerequisites**: Phase 1 complete",
    "**Depends on**: Stream 2",
    "**Blocked by**: Stream 1",
    "**Timeline**: Week 1-2",
    "### Exit Criteria",
    "- Snapshot checksum mismatches: 0",
    "- p95 latency < 250ms",
    "- [x] Works",
    "## Dependency Chain",
    "Stream 1 (Week 1-2)",
    "  \u2193",
    "Phase 1 \u2500\u2500\u25ba Phase 2, Phase 3",
    "| Stream | Lead | Agents |",
    "|---|---|---|",
    "| Core | core-dev | core-dev, x |",
    "```yaml",
    "```",
    "max_concurrent: 3",
    "Payments Context Package (1,500 tokens):",
    "(Max 3000 tokens)",
    "### Evidence Requirements",
    "1. Write the notes",
    "\u00c3\u00a9 \u00e2\u20ac\u201d \u00f0\u0178\u00a7  3 \u00d7 4",
    "",
]


def _check(text: str) -> None:
    try:
        result = import_markdown(text, "FUZZ.md")
    except PlanInvalid as error:
        assert error.problems
        assert all(p.reason and p.line >= 0 for p in error.problems)
        return
    try:
        load_plan_text(result.yaml_text, "plan.yaml")
    except PlanInvalid as error:
        assert all("driver" in p.reason for p in error.problems), str(error)
    assert Plan.model_validate(yaml.safe_load(result.yaml_text)) == result.plan
    lines = text.count("\n") + 1
    for item in (*result.report.unmapped, *result.report.mapped, *result.report.assumptions):
        assert 0 <= item.line <= item.end_line <= lines


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(FRAGMENTS),
            st.text(max_size=40).map(lambda t: t.replace("\n", " ")),
        ),
        max_size=40,
    )
)
def test_shuffled_shapes_and_noise_never_break_the_import(pieces: list[str]) -> None:
    _check("\n".join(pieces))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_never_break_the_import(data: bytes) -> None:
    _check(decode_markdown(data)[0])


@pytest.mark.parametrize(
    "text",
    [
        "### Stream " * 3000,
        "**" * 20000 + ":",
        "- " + "a-" * 10000 + ": task",
        "## Phase 1: " + "(" * 5000,
        "| Stream |\n|---|\n" + "| x |\n" * 400,  # 400 streams: time goes to YAML
        "```\n" + "Stream 1\n  \u2193\n" * 2000 + "```",
        "Backend Stream (Priority 1):\n" + "  - a-b: t\n" * 5000,
        "\u00c3" * 20000,
        "1. " * 10000,
        "week 1-" * 5000,
    ],
    ids=lambda t: repr(t[:16]),
)
def test_adversarial_documents_finish(text: str) -> None:
    _check(text)
