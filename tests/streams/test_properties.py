"""Property-based tests of the plan loader (hypothesis).

(a) Random valid plans survive YAML and JSON dumping and loading unchanged.
(b) One injected defect is always reported, at the line and column of the defect in the dumped
    text. Injected names are upper case; generated names never are, so each is found by search.
(c) ``find_cycle`` agrees with a brute-force search on random graphs.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.plans import load_plan_text
from foundation.errors import PlanInvalid, PlanProblem
from streams.model import Plan, StepSpec
from streams.validation import effective_needs, find_cycle

Data = dict[str, Any]

# Names that YAML 1.1 would read as booleans, numbers, dates or null unless quoted.
_TRICKY = [
    "yes",
    "no",
    "on",
    "off",
    "true",
    "null",
    "1",
    "012",
    "0x1f",
    "1_0",
    "1.5",
    "2024-01-01",
    "nan",
]
NAMES = st.one_of(st.sampled_from(_TRICKY), st.from_regex(r"[a-z][a-z0-9_.-]{0,5}", fullmatch=True))
DURATIONS = st.one_of(
    st.integers(0, 3600),
    st.floats(0, 3600, allow_nan=False).map(lambda f: round(f, 3)),
    st.sampled_from(["250ms", "30s", "2m", "1h30m", "1.5s", "10"]),
)
TIMELINES = st.sampled_from(["15m..30m", "1s..5s", "30m", "10..20", "1h"])
# Free text, less the line breaks YAML 1.1 has beyond \n and \r (NEL, LS, PS): editors and
# json count lines by \n alone, and PyYAML's emitter writes a NEL it cannot read back.
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x85\u2028\u2029"),
    max_size=30,
)


def _subset(draw: st.DrawFn, items: Sequence[str], *, min_size: int = 0) -> list[str]:
    if not items:
        return []
    return draw(
        st.lists(st.sampled_from(items), unique=True, min_size=min_size, max_size=len(items))
    )


def _ordered_before(
    draw: st.DrawFn, ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Random acyclic edges: each id may name ids earlier in a random order of the ids.
    Returns each id's rank in that order and its edges."""
    order = draw(st.permutations(ids))
    rank = {node: i for i, node in enumerate(order)}
    return rank, {node: _subset(draw, order[: rank[node]]) for node in order}


@st.composite
def plans(draw: st.DrawFn, *, min_streams: int = 1) -> Data:
    """A valid plan as plain data: every reference resolves and nothing forms a cycle."""
    classes = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    resources = draw(st.lists(NAMES, max_size=3, unique=True))
    agent_names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    agents: Data = {}
    for name in agent_names:
        agent: Data = {
            "class": draw(st.sampled_from(classes)),
            "can": _subset(draw, ["command", "sleep"], min_size=1),
        }
        if draw(st.booleans()):
            agent["role"] = draw(TEXT)
        agents[name] = agent
    stream_ids = draw(st.lists(NAMES, min_size=min_streams, max_size=4, unique=True))
    _, depends = _ordered_before(draw, stream_ids)
    streams = []
    for stream_id in stream_ids:
        team = _subset(draw, agent_names, min_size=1)
        evidence = draw(st.lists(NAMES, max_size=2, unique=True))
        step_ids = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
        rank, needs = _ordered_before(draw, step_ids)
        steps = []
        for index, step_id in enumerate(step_ids):
            agent_name = draw(st.sampled_from(team))
            action = draw(st.sampled_from(agents[agent_name]["can"]))
            step: Data = {"id": step_id, "agent": agent_name, "action": action}
            if action == "command":
                step["with"] = {"argv": draw(st.lists(TEXT, min_size=1, max_size=3))}
            elif draw(st.booleans()):
                step["with"] = {"seconds": draw(DURATIONS)}
            if draw(st.booleans()):
                step["locks"] = _subset(draw, resources)
            # Leaving needs out means "the previous step": acyclic only when that step
            # comes earlier in the drawn order.
            previous = step_ids[index - 1] if index else None
            if (previous is None or rank[previous] < rank[step_id]) and draw(st.booleans()):
                needs[step_id] = [previous] if previous is not None else []
            else:
                step["needs"] = needs[step_id]
            if draw(st.booleans()):
                step["timeout"] = draw(DURATIONS)
            if evidence and draw(st.booleans()):
                step["evidence"] = _subset(draw, evidence)
            steps.append(step)
        stream: Data = {"id": stream_id, "team": team, "steps": steps}
        if depends[stream_id] or draw(st.booleans()):
            stream["depends_on"] = depends[stream_id]
        if evidence:
            stream["evidence"] = [{"id": e} for e in evidence]
        if draw(st.booleans()):
            stream["timeline"] = draw(TIMELINES)
        if draw(st.booleans()):
            stream["priority"] = draw(st.sampled_from(["critical", "high", "medium", "low"]))
        if draw(st.booleans()):
            stream["title"] = draw(TEXT)
        streams.append(stream)
    plan: Data = {
        "version": 1,
        "plan": draw(NAMES),
        "caps": {c: draw(st.one_of(st.none(), st.integers(1, 8))) for c in classes},
        "resources": resources,
        "agents": agents,
        "streams": streams,
    }
    if draw(st.booleans()):
        plan["title"] = draw(TEXT)
    if draw(st.booleans()):
        plan["defaults"] = {"timeout": draw(DURATIONS), "retries": draw(st.integers(0, 5))}
    return plan


@st.composite
def dumps(draw: st.DrawFn) -> tuple[str, Callable[[Data], str]]:
    """A label and a function writing plan data as that kind of file, in a drawn style."""
    if draw(st.booleans()):
        flow = draw(st.sampled_from([False, True, None]))
        return "plan.yaml", lambda data: yaml.safe_dump(
            data, default_flow_style=flow, sort_keys=False, allow_unicode=True
        )
    indent = draw(st.sampled_from([None, 2]))
    ascii_only = draw(st.booleans())
    return "plan.json", lambda data: json.dumps(data, indent=indent, ensure_ascii=ascii_only)


def _problems(text: str, label: str) -> tuple[PlanProblem, ...]:
    with pytest.raises(PlanInvalid) as info:
        load_plan_text(text, label)
    return info.value.problems


def _token_at(text: str, token: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the nth ``token`` in ``text``, at its opening quote if any."""
    index = -1
    for _ in range(nth):
        index = text.index(token, index + 1)
    if index and text[index - 1] in "'\"":
        index -= 1
    return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)


def _node_at(text: str, path: Sequence[str | int]) -> tuple[int, int]:
    """1-based start of the node at ``path``, composed by pure-Python PyYAML (an oracle).

    Characters YAML forbids (valid inside JSON strings) are masked one for one first."""
    node = yaml.compose(yaml.reader.Reader.NON_PRINTABLE.sub("?", text), Loader=yaml.SafeLoader)
    for part in path:
        if isinstance(part, int):
            node = node.value[part]
        else:
            node = next(v for k, v in node.value if k.value == part)
    return node.start_mark.line + 1, node.start_mark.column + 1


# --- (a) round trips -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(plan=plans(), flow=st.sampled_from([False, True, None]), indent=st.sampled_from([None, 2]))
def test_valid_plans_round_trip_through_yaml_and_json(
    plan: Data, flow: bool | None, indent: int | None
) -> None:
    expected = Plan.model_validate(plan)
    as_yaml = yaml.safe_dump(plan, default_flow_style=flow, sort_keys=False, allow_unicode=True)
    from_yaml, _ = load_plan_text(as_yaml, "plan.yaml")
    from_json, _ = load_plan_text(json.dumps(plan, indent=indent), "plan.json")
    assert from_yaml == expected
    assert from_json == expected
    # The loaded model written out again loads to itself.
    again = from_yaml.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert load_plan_text(yaml.safe_dump(again, sort_keys=False), "again.yaml")[0] == expected


@settings(max_examples=20, deadline=None)
@given(plan=plans())
def test_every_value_of_a_valid_plan_has_its_yaml_position(plan: Data) -> None:
    text = yaml.safe_dump(plan, sort_keys=False, allow_unicode=True)
    _, pos = load_plan_text(text, "plan.yaml")
    for index, stream in enumerate(plan["streams"]):
        path = ("streams", index, "id")
        assert pos.at(path) == _node_at(text, path)
        for j, _ in enumerate(stream["team"]):
            assert pos.at(("streams", index, "team", j)) == _node_at(
                text, ("streams", index, "team", j)
            )


# --- (b) injected defects -------------------------------------------------------------------


def _unknown_agent(draw: st.DrawFn, plan: Data) -> tuple[str, int]:
    stream = draw(st.sampled_from(plan["streams"]))
    if draw(st.booleans()):
        stream["team"].append("GHOST-AGENT")
        return "unknown agent 'GHOST-AGENT'", 1
    draw(st.sampled_from(stream["steps"]))["agent"] = "GHOST-AGENT"
    return "unknown agent 'GHOST-AGENT'", 1


def _unknown_lock(draw: st.DrawFn, plan: Data) -> tuple[str, int]:
    step = draw(st.sampled_from(draw(st.sampled_from(plan["streams"]))["steps"]))
    step["locks"] = [*step.get("locks", []), "GHOST-LOCK"]
    return "unknown resource 'GHOST-LOCK'", 1


def _duplicate_id(draw: st.DrawFn, plan: Data) -> tuple[str, int]:
    stream = draw(st.sampled_from(plan["streams"]))
    agent = stream["team"][0]
    step = {
        "id": "DUP-ID",
        "agent": agent,
        "action": plan["agents"][agent]["can"][0],
        "needs": [],
        "with": {"argv": ["true"]},
    }
    if plan["agents"][agent]["can"][0] == "sleep":
        del step["with"]
    # Deep copies: an object dumped twice would be written once, with an alias.
    if draw(st.booleans()):
        stream["steps"] += [step, copy.deepcopy(step)]
        return f"stream {stream['id']!r}: duplicate step id 'DUP-ID'", 2
    other = {"id": "DUP-ID", "team": [agent], "steps": [{**step, "id": "only"}]}
    plan["streams"] += [other, copy.deepcopy(other)]
    return "duplicate stream id 'DUP-ID' (first at streams[", 2


def _cap_zero(draw: st.DrawFn, plan: Data) -> tuple[str, int]:
    name = draw(st.sampled_from(sorted(plan["caps"])))
    plan["caps"][name] = 0
    return f"caps.{name}: Input should be greater than or equal to 1", 0


DEFECTS = {
    "unknown-agent": _unknown_agent,
    "unknown-lock": _unknown_lock,
    "duplicate-id": _duplicate_id,
    "cap-zero": _cap_zero,
}


@pytest.mark.parametrize("kind", sorted(DEFECTS))
@settings(max_examples=25, deadline=None)
@given(data=st.data(), plan=plans(), dump=dumps())
def test_an_injected_defect_is_reported_at_its_place(
    kind: str, data: st.DataObject, plan: Data, dump: tuple[str, Callable[[Data], str]]
) -> None:
    says, nth = DEFECTS[kind](data.draw, plan)
    label, write = dump
    text = write(plan)
    (problem,) = _problems(text, label)
    assert says in problem.reason
    if nth:
        token = re.search(r"'([A-Z-]+)'", says)
        assert token is not None
        assert (problem.line, problem.column) == _token_at(text, token.group(1), nth)
    else:  # cap 0: the reported place holds the 0 written for that class
        line = text.splitlines()[problem.line - 1]
        before, at = line[: problem.column - 1], line[problem.column - 1 :]
        assert re.match(r"0\b", at)
        name = says.split(":")[0].removeprefix("caps.")
        assert re.search(rf"""(^|[{{,\s])(['"]?){re.escape(name)}\2:\s*$""", before)


def _reachable(edges: Mapping[str, Sequence[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [d for d in edges.get(start, ()) if d in edges]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(d for d in edges[node] if d in edges)
    return seen


def _inject_cycle(
    draw: st.DrawFn, items: Sequence[Data], key: str, edges: dict[str, list[str]]
) -> None:
    """Write one entry under ``key`` that closes a cycle (an edge u -> w where w already
    reaches u) or, where the graph has no edges, two entries joining a pair both ways.
    ``edges`` (id -> what it needs, defaults included) is updated to match."""
    pairs = [(u, w) for w in edges for u in _reachable(edges, w)]
    u, w = draw(st.sampled_from(pairs)) if pairs else draw(st.permutations(list(edges)))[:2]
    by_id = {item["id"]: item for item in items}
    for a, b in ((u, w), (w, u)):
        if b not in _reachable(edges, a):
            edges[a].append(b)
            by_id[a][key] = list(edges[a])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), plan=plans(min_streams=2), dump=dumps())
def test_an_injected_cycle_is_printed_and_located_on_one_of_its_edges(
    data: st.DataObject, plan: Data, dump: tuple[str, Callable[[Data], str]]
) -> None:
    streams = plan["streams"]
    multi = [i for i, s in enumerate(streams) if len(s["steps"]) >= 2]
    base: tuple[str | int, ...]
    if multi and data.draw(st.booleans(), label="in needs"):
        where = data.draw(st.sampled_from(multi))
        items, key, base = streams[where]["steps"], "needs", ("streams", where, "steps")
        specs = [StepSpec.model_validate(s) for s in items]
        edges = {k: list(v) for k, v in effective_needs(specs).items()}
        pattern = rf"stream {re.escape(repr(streams[where]['id']))}: cycle in needs: (.*)"
    else:
        items, key, base = streams, "depends_on", ("streams",)
        edges = {s["id"]: list(s.get("depends_on", [])) for s in streams}
        pattern = r"dependency cycle between streams: (.*)"
    _inject_cycle(data.draw, items, key, edges)
    label, write = dump
    text = write(plan)
    (problem,) = _problems(text, label)
    match = re.fullmatch(pattern, problem.reason)
    assert match, problem.reason
    cycle = match.group(1).split(" -> ")
    assert cycle[0] == cycle[-1]
    assert len(set(cycle)) == len(cycle) - 1
    assert all(b in edges[a] for a, b in itertools.pairwise(cycle))
    # Reported at an entry of the file that spells out one of the cycle's edges (a default
    # need, the previous step, is written nowhere).
    index_of = {item["id"]: i for i, item in enumerate(items)}
    entries = {
        _node_at(text, (*base, index_of[a], key, items[index_of[a]][key].index(b)))
        for a, b in itertools.pairwise(cycle)
        if b in items[index_of[a]].get(key, [])
    }
    assert (problem.line, problem.column) in entries


# --- (c) find_cycle -------------------------------------------------------------------------


def _has_cycle(edges: Mapping[str, Sequence[str]]) -> bool:
    return any(node in _reachable(edges, node) for node in edges)


GRAPHS = st.dictionaries(
    keys=st.integers(0, 7).map(str),
    values=st.lists(st.integers(0, 9).map(str), max_size=4),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(graph=GRAPHS)
def test_find_cycle_agrees_with_brute_force(graph: dict[str, list[str]]) -> None:
    cycle = find_cycle(graph)
    assert (cycle is not None) == _has_cycle(graph)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert len(set(cycle)) == len(cycle) - 1
        assert all(b in graph[a] for a, b in itertools.pairwise(cycle))
