"""The loader's fast path (no positions) agrees with the positioned one, and leaves GC on."""

from __future__ import annotations

import gc

import pytest
import yaml

from foundation.errors import PlanInvalid
from streams import loader

PLAN = """\
version: 1
plan: fast
caps: {light: null}
agents:
  a: {class: light, can: [sleep]}
streams:
- id: one
  team: &team [a]
  steps:
  - {id: s1, agent: a, action: sleep, with: {seconds: 0}}
- id: two
  team: *team
  steps:
  - {id: s1, agent: a, action: sleep, with: &w {seconds: 1}}
  - {id: s2, agent: a, action: sleep, with: *w, needs: [s1]}
"""


def test_fast_data_equals_the_positioned_data_aliases_included() -> None:
    fast = loader._fast_yaml(PLAN)
    slow, pos, problems = loader._parse(PLAN, "plan.yaml")
    assert fast == slow
    assert problems == []
    assert fast["streams"][1]["team"] == ["a"]
    assert pos.at(("streams", 1, "steps", 1, "id")) == (15, 10)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key
        "? [a]\n: 1\n",  # a key that is not a plain value
        "base: &b {x: 1}\nother:\n  <<: *b\n",  # a merge key
        "s: !!set {a, b}\n",  # a rare tag
        "d: 2020-99-99\n",  # a value PyYAML cannot build
        "a: [\n",  # malformed
    ],
)
def test_fast_path_leaves_what_needs_judging_to_the_positioned_one(text: str) -> None:
    with pytest.raises(loader._Slow):
        loader._fast_yaml(text)


def test_positions_of_a_valid_yaml_plan_are_composed_on_first_use() -> None:
    plan, pos = loader.load_plan_text(PLAN, "plan.yaml")
    assert plan.total_steps() == 3
    assert isinstance(pos, loader._LazyPositions)
    assert pos.at(("streams", 0, "id"), key=True) == (7, 3)
    assert pos.values[("streams", 1, "team")] == (8, 9)  # an alias: at its anchor


@pytest.mark.parametrize("text", [PLAN, PLAN.replace("agent: a, action", "agent: b, action")])
def test_gc_is_enabled_again_after_a_load_valid_or_not(text: str) -> None:
    assert gc.isenabled()
    try:
        loader.load_plan_text(text, "plan.yaml")
    except PlanInvalid as exc:
        assert "unknown agent 'b'" in str(exc)
    assert gc.isenabled()


def test_a_load_with_gc_off_leaves_it_off() -> None:
    gc.disable()
    try:
        loader.load_plan_text(PLAN, "plan.yaml")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_c_loader_is_used_when_libyaml_is_there() -> None:
    if getattr(yaml, "__with_libyaml__", False):
        assert issubclass(loader._CachingLoader, yaml.CSafeLoader)
    else:
        assert issubclass(loader._CachingLoader, yaml.SafeLoader)
