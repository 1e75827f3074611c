"""Property-based tests (hypothesis) of context packages over generated plans.

Every step carries a unique marker in its command line and a unique id, so isolation is a
plain search: an agent's package shows its own markers, and of other agents' steps only the
ids of those it waits on. Free text includes newlines, Markdown and non-ASCII characters.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from context_packages import (
    PackageTooLarge,
    TiktokenTokenizer,
    build_package,
    cl100k_base,
    gather_sections,
    package_header,
    render_markdown,
)
from streams.model import Plan
from streams.validation import effective_needs

Data = dict[str, Any]

TOKENIZER: TiktokenTokenizer = cl100k_base()
TEXT = st.lists(
    st.text(st.characters(codec="utf-8"), max_size=12)
    | st.sampled_from(["\n", "\n## Team\n", "`", "# ", "**"]),
    max_size=5,
).map("".join)
MAYBE_TEXT = st.none() | TEXT
LIMITS = st.integers(64, 120) | st.integers(120, 1500) | st.integers(1500, 6000)


def _steps(
    draw: st.DrawFn, counter: list[int], team: list[str], evidence: list[Data], count: int
) -> list[Data]:
    made: list[Data] = []
    for _ in range(count):
        sid = f"step{len(counter)}"
        counter.append(0)
        step: Data = {
            "id": sid,
            "agent": draw(st.sampled_from(team)),
            "action": "command",
            "with": {"argv": ["sh", "-c", f"ARGV-{sid}"]},
        }
        if draw(st.booleans()):
            step["with"]["env"] = {"API_TOKEN": f"SECRET-{sid}", "MODE": "fast"}
        if draw(st.booleans()) and made:
            earlier = [m["id"] for m in made]
            step["needs"] = draw(st.lists(st.sampled_from(earlier), unique=True))
        if draw(st.booleans()):
            step["title"] = draw(TEXT)
        if draw(st.booleans()) and evidence:
            step["evidence"] = [draw(st.sampled_from(evidence))["id"]]
        if draw(st.booleans()):
            step["locks"] = ["db"]
        made.append(step)
    return made


@st.composite
def plans(draw: st.DrawFn) -> Data:
    """A valid plan as data. Agents are ``agent-N``, steps ``stepN``; each step's argv
    holds the marker ``ARGV-stepN`` and its secrets ``SECRET-stepN``."""
    agents: Data = {}
    for i in range(draw(st.integers(1, 5))):
        spec: Data = {"class": draw(st.sampled_from(["cpu", "io"])), "can": ["command"]}
        if draw(st.booleans()):
            spec["role"] = draw(TEXT)
        if draw(st.booleans()):
            spec["token_limit"] = draw(LIMITS)
        agents[f"agent-{i}"] = spec
    names = list(agents)
    counter: list[int] = []
    streams = []
    for s in range(draw(st.integers(1, 4))):
        team = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
        evidence = [
            {"id": f"ev{s}-{e}", "description": draw(TEXT), "verified": draw(st.booleans())}
            for e in range(draw(st.integers(0, 2)))
        ]
        stream: Data = {
            "id": f"stream{s}",
            "title": draw(MAYBE_TEXT),
            "current_state": draw(MAYBE_TEXT),
            "strategy": draw(MAYBE_TEXT),
            "team": team,
            "steps": _steps(draw, counter, team, evidence, draw(st.integers(1, 6))),
            "evidence": evidence,
            "depends_on": [f"stream{d}" for d in range(s) if draw(st.booleans())],
        }
        if draw(st.booleans()):
            stream["gate"] = {"threshold": 0.5, "criteria": [draw(TEXT) or "x > 1"]}
        if draw(st.booleans()):
            rollback = _steps(draw, counter, team, evidence, draw(st.integers(0, 3)))
            stream["rollback"] = {"budget": "2m", "steps": rollback}
        streams.append(stream)
    return {
        "plan": "generated",
        "title": draw(MAYBE_TEXT),
        "summary": draw(MAYBE_TEXT),
        "caps": {"cpu": 2, "io": None},
        "resources": ["db"],
        "defaults": {"token_limit": draw(LIMITS)},
        "agents": agents,
        "streams": streams,
    }


def _limit(plan: Plan, agent: str) -> int:
    spec = plan.agents[agent]
    return spec.token_limit if spec.token_limit is not None else plan.defaults.token_limit


def _headings(markdown: str) -> list[str]:
    return [line[3:] for line in markdown.split("\n") if line.startswith("## ")]


def _check_package(plan: Plan, agent: str, limit: int) -> None:
    """The package of ``agent`` fits ``limit``, or the error names an exact minimum; its cut
    list is exactly what is missing, in the declared order, and nothing more was cut."""
    material = gather_sections(plan, agent)
    order = [s for s in sorted(material, key=lambda s: s.priority) if not s.required]
    try:
        package = build_package(plan, agent, tokenizer=TOKENIZER, token_limit=limit)
    except PackageTooLarge as error:
        event("minimal package over the limit")
        assert error.agent == agent and error.limit == limit and error.minimum > limit
        minimal = build_package(plan, agent, tokenizer=TOKENIZER, token_limit=error.minimum)
        assert minimal.tokens == error.minimum
        assert [c.title for c in minimal.cut] == [s.title for s in order]
        return
    assert package.tokens == TOKENIZER.count(package.markdown) <= limit
    assert f"**Package Size**: {package.tokens} tokens" in package.markdown
    cut = [c.title for c in package.cut]
    event(f"{len(cut)} sections cut")
    kept = [s.title for s in package.sections]
    # Exactly the sections absent from the output are listed as cut.
    assert _headings(package.markdown) == kept
    assert sorted(kept + cut) == sorted(s.title for s in material)
    assert cut == [s.title for s in order[: len(cut)]]
    if cut:
        assert f"**Cut to fit**: {', '.join(cut)}\n" in package.markdown
        # Minimal: with the last cut section back in, the package was over the limit.
        back = [s for s in material if s.title not in cut[:-1]]
        _, tokens = render_markdown(package_header(plan, agent), back, cut[:-1], limit, TOKENIZER)
        assert tokens > limit
    else:
        assert "**Cut to fit**" not in package.markdown


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_every_agent_within_its_limit(data: Data) -> None:
    plan = Plan.model_validate(data)
    for agent in plan.agents:
        _check_package(plan, agent, _limit(plan, agent))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(), st.floats(0.0, 1.0))
def test_limits_between_minimum_and_full_size(data: Data, fraction: float) -> None:
    """Limits drawn between the minimal and the full package force partial cuts."""
    plan = Plan.model_validate(data)
    agent = next(iter(plan.agents))
    full = build_package(plan, agent, tokenizer=TOKENIZER, token_limit=10**6).tokens
    try:
        minimum = build_package(plan, agent, tokenizer=TOKENIZER, token_limit=64).tokens
    except PackageTooLarge as error:
        minimum = error.minimum
    limit = round(minimum + (full - minimum) * fraction)
    _check_package(plan, agent, max(64, limit))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_isolation(data: Data) -> None:
    plan = Plan.model_validate(data)
    runner: dict[str, str] = {}
    waits: dict[str, set[str]] = {a: set() for a in plan.agents}
    for stream in plan.streams:
        for steps in (stream.steps, stream.rollback.steps if stream.rollback else []):
            needs = effective_needs(steps)
            for step in steps:
                runner[step.id] = step.agent
                waits[step.agent].update(needs[step.id])
    for agent in plan.agents:
        text = build_package(plan, agent, tokenizer=TOKENIZER, token_limit=10**6).markdown
        shown = set(re.findall(r"\bstep\d+\b", text))
        own = {sid for sid, who in runner.items() if who == agent}
        assert own <= shown
        assert shown - own <= waits[agent]
        markers = set(re.findall(r"ARGV-(step\d+)", text))
        assert markers == own
        assert "SECRET-" not in text
