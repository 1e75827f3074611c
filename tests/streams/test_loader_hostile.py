"""Hostile plan files: refused with a placed problem, never a crash or unbounded work.

Alias bombs and recursive aliases, nesting past MAX_DEPTH, oversized files, numbers past
Python's digit limit, wrong shapes anywhere in the plan, and names holding characters that
would hide, break or escape in terminals, logs and lock keys.
"""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from agents.plans import load_plan, load_plan_text
from foundation.errors import PlanInvalid, PlanProblem
from streams import _limits, loader
from streams._limits import MAX_ALIAS_VALUES, MAX_DEPTH
from streams.model import Name
from tests.streams.test_loader import VALID, edit, locate

ROOT = Path(__file__).resolve().parent.parent.parent


def refused(text: str, label: str = "plan.yaml") -> tuple[PlanProblem, ...]:
    with pytest.raises(PlanInvalid) as info:
        load_plan_text(text, label)
    problems = info.value.problems
    assert problems
    for problem in problems:
        assert problem.line >= 1 and problem.column >= 1, problem
        assert f"{problem.reason} {problem.fix}".isprintable(), problem
    return problems


def one(text: str, label: str = "plan.yaml") -> PlanProblem:
    (problem,) = refused(text, label)
    return problem


def billion_laughs(levels: int = 10, fan_out: int = 9) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * fan_out) + "]"]
    lines += [
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan_out) + "]" for i in range(1, levels)
    ]
    return "\n".join(lines) + "\n"


# --- aliases -------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_in_bounded_memory_at_the_expanding_alias() -> None:
    text = billion_laughs()
    tracemalloc.start()
    try:
        problem = one(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"aliases expand to more than {MAX_ALIAS_VALUES:,} values" in problem.reason
    assert problem.fix
    # 10^10 values written out would take hundreds of GiB; the refusal stays small.
    assert peak < 64 * 1024 * 1024
    assert problem.line > 1  # at an anchor that is reused, not at the top of the file


def test_aliases_that_expand_within_the_bound_still_load() -> None:
    text = edit(VALID, "defaults: {timeout: 5m, retries: 1}", "defaults: &d {timeout: 5m}")
    text = edit(text, "    team: [sec]\n", "    team: [sec]\n    title: &t shared\n")
    plan, _ = load_plan_text(text, "plan.yaml")
    assert plan.defaults.timeout == 300.0


@pytest.mark.parametrize(
    "text",
    [
        "x: &x [*x]\n",
        "x: &x {a: *x}\n",
        "x: &x [[[*x]]]\n",
        "r: &r {<<: *r}\n",
        "a: &a !!set {? *a}\n",
        "a: &a !!omap [{x: *a}]\n",
    ],
    ids=["sequence", "mapping", "nested", "merge", "set", "omap"],
)
def test_a_value_that_contains_an_alias_of_itself_is_refused(text: str) -> None:
    problem = one(text)
    assert "alias of itself" in problem.reason or "nested deeper" in problem.reason
    assert problem.line == 1


# --- depth and size --------------------------------------------------------------------


def test_json_nested_past_the_decoders_limit_is_placed_at_the_first_level_too_many() -> None:
    problem = one("[" * 1000 + "]" * 1000, "plan.json")
    assert problem.reason == f"values nested deeper than {MAX_DEPTH} levels"
    assert (problem.line, problem.column) == (1, MAX_DEPTH + 1)


@pytest.mark.parametrize("label", ["plan.yaml", "plan.json"])
def test_with_parameters_nested_past_the_limit_are_refused_in_yaml_and_json(label: str) -> None:
    data = yaml.safe_load(VALID)
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = {"n": deep}
    data["streams"][0]["steps"][0]["with"] = {"seconds": 1, "extra": deep}
    text = json.dumps(data) if label.endswith(".json") else yaml.safe_dump(data)
    problem = one(text, label)
    assert problem.reason == f"values nested deeper than {MAX_DEPTH} levels"


@pytest.mark.parametrize("label", ["plan.yaml", "plan.json"])
def test_nesting_within_the_limit_is_not_refused_for_depth(label: str) -> None:
    data = yaml.safe_load(VALID)
    deep: Any = 1
    for _ in range(MAX_DEPTH - 8):
        deep = [deep]
    data["streams"][0]["steps"][1]["with"] = {"argv": ["echo"], "env": {"X": deep}}
    text = json.dumps(data) if label.endswith(".json") else yaml.safe_dump(data)
    with pytest.raises(PlanInvalid) as info:  # command's env wants strings: a type error
        load_plan_text(text, label)
    assert not any("nested deeper" in p.reason for p in info.value.problems)


def test_deep_block_yaml_is_placed_where_it_passes_the_limit() -> None:
    text = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "x\n"
    problem = one(text)
    assert problem.reason == f"values nested deeper than {MAX_DEPTH} levels"
    assert problem.line == MAX_DEPTH + 1


def test_a_plan_over_the_size_limit_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "MAX_PLAN_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text(VALID + "# " + "x" * 2000 + "\n")
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.reason == "the plan is larger than the 16 MiB a plan may have"
    assert problem.fix.startswith("split it")
    with pytest.raises(PlanInvalid, match="MiB a plan may have"):
        load_plan_text(VALID + "#" * 2000, "big.yaml")


def test_a_yaml_plan_of_too_many_values_is_refused_before_it_is_composed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_limits, "MAX_VALUES", 1000)
    text = VALID + "".join(f"x{i}: [1, 2]\n" for i in range(400))  # 1,200 values more
    problem = one(text)
    assert problem.reason == "the plan has more than 1,000 values (scalars, lists and mappings)"
    assert problem.fix == "split it into several plans"
    # Placed at the 1,001st value: after the plan's own, four a line (key, list, 1, 2).
    kinds = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
    own = sum(isinstance(event, kinds) for event in yaml.parse(VALID))
    nth = 1000 + 1 - own
    assert problem.line == VALID.count("\n") + (nth + 3) // 4
    line = text.splitlines()[problem.line - 1]
    columns = [1, line.index("[") + 1, line.index("[") + 2, line.index("2]") + 1]
    assert problem.column == columns[(nth - 1) % 4]


def test_a_json_plan_of_too_many_values_is_still_checked_without_positions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_limits, "MAX_VALUES", 1000)
    data = yaml.safe_load(VALID)
    data["resources"] = [f"r{i}" for i in range(1200)]
    data["plan"] = "not a name!"
    problems = refused(json.dumps(data), "plan.json")
    assert [(p.line, p.column) for p in problems] == [(1, 1)]
    assert problems[0].reason.startswith("plan: String should match pattern")


@pytest.mark.parametrize("label", ["plan.yaml", "plan.json"])
def test_an_integer_past_pythons_digit_limit_is_placed(label: str) -> None:
    data = yaml.safe_load(VALID)
    data["defaults"]["retries"] = 7777
    text = json.dumps(data) if label.endswith(".json") else yaml.safe_dump(data)
    text = text.replace("7777", "9" * 5000)
    problem = one(text, label)
    assert problem.reason.startswith("a number of more than")
    assert problem.fix
    before = text[: text.index("9" * 5000)]
    assert problem.line == before.count("\n") + 1


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("2020-99-99", "a timestamp"),
        ("!!timestamp 2020-02-30", "a timestamp"),
        ("!!timestamp soon", "a timestamp"),
        ("!!int abc", "an int"),
        ("!!float x", "a float"),
        ("!!bool maybe", "a bool"),
        ("0x_", "an int"),
    ],
)
@pytest.mark.parametrize("where", ["value", "key"])
def test_a_value_yaml_cannot_build_is_placed(value: str, kind: str, where: str) -> None:
    old = "title: A small plan"
    text = edit(VALID, old, f"title: {value}" if where == "value" else f"{value}: 1")
    problem = one(text)
    assert problem.reason.endswith(f"is read as {kind} but is not a valid one")
    assert problem.fix == "quote it to make it a string, or correct it"
    assert (problem.line, problem.column) == locate(text, value)


def test_a_duration_past_floats_range_is_a_problem_not_an_overflow() -> None:
    problem = one(edit(VALID, "timeout: 5m", "timeout: " + "9" * 400))
    assert "defaults.timeout" in problem.reason
    assert (problem.line, problem.column) == locate(VALID, "5m")


def test_invalid_utf8_is_placed_at_its_byte(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(VALID.encode().replace(b"A small", b"A \xffsmall"))
    with pytest.raises(PlanInvalid) as info:
        load_plan(path)
    (problem,) = info.value.problems
    assert problem.reason.startswith("not UTF-8: byte 0xff")
    assert (problem.line, problem.column) == locate(VALID, "small")


# --- wrong shapes --------------------------------------------------------------------

SHAPES = [
    ("team: [sec, perf]", "team: {a: 1}"),
    ("team: [sec, perf]", "team: 5"),
    ("team: [sec, perf]", "team: true"),
    ("team: [sec, perf]", "team: []"),
    ("team: [sec, perf]", "team: [[sec]]"),
    ("team: [sec, perf]", "team: [sec, perf]\n    lead: [sec]"),
    ("team: [sec, perf]", "team: [sec, perf]\n    rollback: 5"),
    ("team: [sec, perf]", "team: [sec, perf]\n    rollback: {steps: {a: 1}}"),
    ("team: [sec, perf]", "team: [sec, perf]\n    rollback: {steps: [undo it, 5, [1]]}"),
    ("timeline: 15m..30m", "timeline: {expected_s: a, limit_s: [1]}"),
    ("timeline: 15m..30m", "timeline: {expected: [1]}"),
    ("timeline: 15m..30m", "timeline: [15m]"),
    ("timeline: 15m..30m", "timeline: {1: 2}"),
    ("timeline: 15m..30m", "timeline: .inf"),
    ("evidence: [{id: report}]", "evidence: {id: report}"),
    ("evidence: [{id: report}]", "evidence: [report]"),
    ("defaults: {timeout: 5m, retries: 1}", "defaults: 5"),
    ("defaults: {timeout: 5m, retries: 1}", "defaults: {timeout: [5m]}"),
    ("caps: {cpu: 2, io: 1, light: null}", "caps: [cpu, io]"),
    ("caps: {cpu: 2, io: 1, light: null}", "caps: {cpu: 2, io: 1, light: null, 5: 1}"),
    ("sec: {class: io, can: [command, sleep]}", "sec: [io]"),
    ("sec: {class: io, can: [command, sleep]}", "sec: {class: io, can: command}"),
    ("sec: {class: io, can: [command, sleep]}", "sec: {class: io, can: [sleep], driver: 5}"),
    ("sec: {class: io, can: [command, sleep]}", "sec: {class: io, driver: {command: {a: 1}}}"),
    ("steps:\n      - {id: s1", "steps: {a: 1}\n    x:\n      - {id: s1"),
    ("with: {seconds: 250ms}", "with: [250ms]"),
    ("with: {seconds: 250ms}", "with: 5"),
    ("locks: [redis]", "locks: {redis: 1}"),
    ("locks: [redis]", "needs: 5"),
    ("locks: [redis]", "undo: [1]"),
    ("locks: [redis]", "undo: {action: [sleep]}"),
    ("depends_on: [a]", "depends_on: a"),
    ("depends_on: [a]", "depends_on: [{a: 1}]"),
    ("- id: b", "- 5\n  - id: b"),
    ("- id: b", "- [id, b]\n  - id: b"),
]


@pytest.mark.parametrize(("old", "new"), SHAPES, ids=[new for _, new in SHAPES])
def test_a_wrong_shape_anywhere_is_a_placed_problem(old: str, new: str) -> None:
    text = edit(VALID, old, new)
    problems = refused(text)
    assert all(p.line > 1 for p in problems)


@pytest.mark.parametrize(
    "replacement", ["plan: 5", "plan: [demo]", "streams: 5", "agents: [sec]", "version: [1]"]
)
def test_wrong_shapes_at_the_top_are_placed(replacement: str) -> None:
    key = replacement.split(":")[0]
    lines = [
        replacement if line.startswith(f"{key}:") and not line.startswith(f"{key}: [\n") else line
        for line in VALID.splitlines()
    ]
    text = "\n".join(line for line in lines if not line.startswith("  ") or key != "agents")
    refused(text)


@pytest.mark.parametrize("text", ["", "5", "[]", "null", "'text'", "- a\n- b\n"])
def test_a_file_that_is_not_a_mapping_is_placed(text: str) -> None:
    refused(text)


# --- names ---------------------------------------------------------------------------

HOSTILE = {
    "nul": "\x00",
    "bell": "\x07",
    "escape": "\x1b[31m",
    "newline": "\n",
    "tab": "\t",
    "rlo": "\u202e",
    "lri": "\u2066",
    "pdi": "\u2069",
    "rlm": "\u200f",
    "zero-width": "\u200b",
    "line-separator": "\u2028",
    "slash": "/",
}
# (what to rename, the text to rename it in, and a needle where the problem must be)
PLACES = {
    "agent key": ("sec: {class", "@NAME@: {class"),
    "class key": ("caps: {cpu: 2", "caps: {@NAME@: 2"),
    "team member": ("team: [sec, perf]", "team: [@NAME@, perf]"),
    "step agent": ("agent: perf, action: command", "agent: @NAME@, action: command"),
    "lock": ("locks: [redis]", "locks: [@NAME@]"),
    "evidence ref": ("evidence: [report]", "evidence: [@NAME@]"),
    "depends_on": ("depends_on: [a]", "depends_on: [@NAME@]"),
    "can": ("can: [command, sleep]}\n  perf", "can: [command, @NAME@]}\n  perf"),
    "group": ("priority: high", "priority: high\n    group: @NAME@"),
    "lead": ("priority: high", "priority: high\n    lead: @NAME@"),
    "needs": ("locks: [redis]", "needs: [@NAME@]"),
    "action": ("action: command", "action: @NAME@"),
}


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_name_with_hostile_characters_is_refused_where_it_is(place: str, kind: str) -> None:
    old, new = PLACES[place]
    name = json.dumps(f"x{HOSTILE[kind]}y")  # a quoted YAML string, escapes and all
    text = edit(VALID, old, new.replace("@NAME@", name))
    problems = refused(text)
    placed = [p for p in problems if "a name may hold letters, digits" in p.reason]
    assert placed, problems
    problem = placed[0]
    assert (problem.line, problem.column) == locate(text, name), problem
    assert "no '/'" in problem.reason and "bidi" in problem.reason


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_empty_and_dot_names_are_refused(name: str) -> None:
    text = edit(VALID, "locks: [redis]", f"locks: ['{name}']")
    assert any("is not a name" in p.reason for p in refused(text))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        *((n, True) for n in ["...", "....", ".x", "..x", "...x", "x.", "x..", "a.b", ". x", " "]),
        *((n, False) for n in ["", ".", "..", "x/y", "./", "../x", ".\u200b", "..\n", "\u2028"]),
    ],
)
def test_a_name_is_any_printable_text_but_a_slash_dot_and_dot_dot(name: str, valid: bool) -> None:
    names = TypeAdapter(list[Name])
    if valid:
        assert names.validate_python([name]) == [name]
    else:
        with pytest.raises(ValidationError):
            names.validate_python([name])


def test_printable_names_beyond_identifiers_still_load() -> None:
    text = re.sub(r"\bsec\b", "'sécurité team'", VALID).replace("cpu", "'cpu: fast'")
    text = text.replace("priority: high", "group: 'grp #2'")
    plan, _ = load_plan_text(text, "plan.yaml")
    assert "sécurité team" in plan.agents
    assert plan.agents["perf"].resource_class == "cpu: fast"
    assert plan.streams[0].group == "grp #2"


def test_a_nul_in_a_driver_argument_is_refused() -> None:
    text = edit(
        VALID,
        "sec: {class: io, can: [command, sleep]}",
        'sec: {class: io, can: [command, sleep], driver: {command: ["run\\0me"]}}',
    )
    problem = one(text)
    assert "NUL" in problem.reason


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_still_validates(path: Path) -> None:
    assert load_plan(path).streams
