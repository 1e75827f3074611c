"""Bounds on the work a plan file may ask of the loader, so hostile files are refused fast.

A YAML alias names a node that is already composed: libyaml shares it, so composing is cheap,
but every alias *use* expands to a full copy in the data that pydantic then walks. Ten
nested aliases of ten entries each ("billion laughs") expand to 10^10 values from a file of
a few hundred bytes, and an alias inside its own anchor (``x: &x [*x]``) never ends. The
loader therefore measures what an alias expands to on the composed node graph (each node
once, memoised), before expanding it, and refuses past :data:`MAX_ALIAS_VALUES`; any
nesting past :data:`MAX_DEPTH` and any file past :data:`MAX_PLAN_BYTES` is refused too.
Each refusal is a :class:`~foundation.errors.PlanProblem` at the offending place.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from foundation.errors import PlanProblem

__all__ = [
    "MAX_ALIAS_VALUES",
    "MAX_DEPTH",
    "MAX_PLAN_BYTES",
    "MAX_VALUES",
    "Refused",
    "deeper_than",
    "json_too_deep_at",
    "measure",
    "too_big",
    "too_many_values",
    "too_many_values_at",
]

#: Largest plan text accepted, in bytes (characters for a text already decoded): the
#: daemon's documented ``plan_text`` limit. A 10,000-step plan is about 1 MiB.
MAX_PLAN_BYTES = 16 * 1024 * 1024
#: Deepest nesting of mappings and lists, counted from the top of the file. A plan's own
#: structure is 6 levels deep (``streams[i].rollback.steps[j].with``); the rest is for
#: ``with:`` parameters. orjson, which writes events and context packages, stops at 255.
MAX_DEPTH = 64
#: Most values that aliases (``*name``) and merge keys (``<<: *name``) may add to a plan by
#: expanding, in all. Real plans reuse a few small blocks; 100,000 values is ten times the
#: steps of the largest plan benchmarked, and expands in well under a second.
MAX_ALIAS_VALUES = 100_000
#: Most values (scalars, lists, mappings, keys included) a YAML plan may be composed of:
#: libyaml's node tree and the positions cost about 550 bytes a value, so this bounds
#: reading a plan to about 280 MiB. A 10,000-step plan has 130,000.
MAX_VALUES = 500_000

# Every value after the first is introduced by one of these (a flow separator, a key's
# colon, a line break, a block entry, an opening bracket, an explicit key), and each one
# introduces at most two (a key and its empty value): twice their count bounds the values.
_INTRODUCERS = ",:\n-[{?"


class Refused(Exception):
    """A bound was passed; ``problem`` says where and how to fix it."""

    def __init__(self, problem: PlanProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def too_deep(label: str, line: int, column: int) -> Refused:
    return Refused(
        PlanProblem(
            label,
            line,
            column,
            f"values nested deeper than {MAX_DEPTH} levels",
            "flatten this value: a plan needs a handful of levels, its `with:` parameters "
            "a few more",
        )
    )


def too_big(label: str) -> Refused:
    return Refused(
        PlanProblem(
            label,
            1,
            1,
            f"the plan is larger than the {MAX_PLAN_BYTES // 2**20} MiB a plan may have",
            "split it into several plans, or move large values into files the steps read",
        )
    )


def too_many_values_at(text: str) -> tuple[int, int] | None:
    """1-based (line, column) of the value of YAML ``text`` past MAX_VALUES, or None.

    A count of the characters that can introduce a value, in C, clears nearly every plan;
    only a text past that bound has its parse events counted, one at a time (libyaml's
    parser, in constant memory): the node tree is never composed for a text past it.
    """
    if 2 * (1 + sum(text.count(c) for c in _INTRODUCERS)) <= MAX_VALUES:
        return None
    loader = yaml.CSafeLoader(text) if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader(text)
    kinds = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)
    count = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, kinds):
                count += 1
                mark = event.start_mark
                if count > MAX_VALUES and mark is not None:
                    return mark.line + 1, mark.column + 1
    except yaml.YAMLError:
        pass  # composing stops at the same place, with the values counted so far
    finally:
        loader.dispose()
    return None


def too_many_values(label: str, line: int, column: int) -> Refused:
    return Refused(
        PlanProblem(
            label,
            line,
            column,
            f"the plan has more than {MAX_VALUES:,} values (scalars, lists and mappings)",
            "split it into several plans",
        )
    )


def measure(
    node: yaml.Node, depth: int, label: str, sizes: dict[int, tuple[int, int]]
) -> tuple[int, int]:
    """(values, height) of ``node`` with every alias expanded, each node computed once
    (``sizes`` memoises by node id); raise Refused for a node that contains itself, or
    one that would end deeper than MAX_DEPTH when placed at ``depth``."""
    return _measure(node, depth, label, sizes, set())


def _measure(
    node: yaml.Node,
    depth: int,
    label: str,
    sizes: dict[int, tuple[int, int]],
    open_ids: set[int],
) -> tuple[int, int]:
    key = id(node)
    known = sizes.get(key)
    if known is None:
        if key in open_ids:
            raise Refused(
                PlanProblem(
                    label,
                    *_at(node),
                    "this value contains an alias of itself, so it never ends",
                    "an alias (*name) may only name a value written before and outside it",
                )
            )
        if depth > MAX_DEPTH:
            raise too_deep(label, *_at(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        open_ids.add(key)
        count, height = 1, 0
        for child in children:
            child_count, child_height = _measure(child, depth + 1, label, sizes, open_ids)
            count += child_count
            height = max(height, child_height + 1)
        open_ids.discard(key)
        known = sizes[key] = (count, height)
    if depth + known[1] > MAX_DEPTH:
        raise too_deep(label, *_at(node))
    return known


# A JSON string, or one bracket: scanned by the regex engine, so only brackets reach Python.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_too_deep_at(text: str) -> tuple[int, int] | None:
    """1-based (line, column) of the first bracket of ``text`` (JSON) that opens a level
    past MAX_DEPTH, or None."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                index = match.start()
                return text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)
        elif token in "]}":
            depth -= 1
    return None


def deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` (plain data) holds values more than ``levels`` levels below it
    (the height that :func:`measure` computes for a node)."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    if levels <= 0:
        return len(value) > 0
    return any(deeper_than(item, levels - 1) for item in items if isinstance(item, dict | list))
