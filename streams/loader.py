"""Loading a plan file (YAML or JSON) into a validated :class:`~streams.model.Plan`.

Every problem is reported with the file, line and column it comes from: malformed YAML,
duplicate keys, unknown keys (with the allowed ones and a close match), wrong types, and the
cross-reference checks of :mod:`streams.validation`. All problems are collected and raised
together as one :class:`~orchestrator.errors.PlanInvalid`.

Data is built by libyaml (C); positions come from a second, C-composed node tree walked once,
so a 10,000-step plan loads in a fraction of a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agents.registry import ActionRegistry
from orchestrator.errors import PlanInvalid, PlanProblem
from streams._positions import Loc, Positions, describe_error
from streams.model import Plan
from streams.validation import check_plan

__all__ = ["Positions", "load_plan", "load_plan_text"]

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing: slower, same results
    _Loader = yaml.SafeLoader


def _walk(node: yaml.Node, path: Loc, pos: Positions, problems: list[tuple[Loc, str, str]]) -> None:
    pos.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key: Any = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = (*path, key)
            if key in seen:
                pos.keys[child + ("#dup",)] = (
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
                problems.append(
                    (child + ("#dup",), f"duplicate key {key!r}", "keep only one of them")
                )
                continue
            seen.add(key)
            pos.keys[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            _walk(value_node, child, pos, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), pos, problems)


def _yaml_problem(label: str, exc: yaml.YAMLError) -> PlanProblem:
    mark = getattr(exc, "problem_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    reason = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    return PlanProblem(label, line, column, reason, "fix the YAML syntax at this place")


def _parse(text: str, label: str) -> tuple[Any, Positions, list[PlanProblem]]:
    problems: list[PlanProblem] = []
    pos = Positions()
    if label.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanInvalid.one(
                label, exc.lineno, exc.colno, f"malformed JSON: {exc.msg}", "fix the JSON syntax"
            ) from None
    else:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise PlanInvalid([_yaml_problem(label, exc)]) from None
    try:
        node = yaml.compose(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        node = None  # valid JSON that YAML 1.1 cannot compose: positions fall back to 1:1
    if node is not None:
        dupes: list[tuple[Loc, str, str]] = []
        _walk(node, (), pos, dupes)
        for loc, reason, fix in dupes:
            line, column = pos.keys[loc]
            problems.append(PlanProblem(label, line, column, reason, fix))
    return data, pos, problems


def load_plan_text(
    text: str, label: str = "<plan>", *, registry: ActionRegistry | None = None
) -> tuple[Plan, Positions]:
    """Parse and validate plan ``text``; ``label`` names the file in errors.

    ``registry`` (an :class:`agents.ActionRegistry`) checks actions and their ``with:``
    parameters; the built-in registry is used when it is None. Raises PlanInvalid.
    """
    if registry is None:
        # Imported here: the built-in actions use streams' duration types themselves.
        from agents.actions import builtin_registry  # noqa: PLC0415

        registry = builtin_registry()
    data, pos, problems = _parse(text, label)
    if not isinstance(data, dict):
        problems.append(
            PlanProblem(label, 1, 1, "a plan file must be a mapping of keys to values",
                        "start from examples/phase2.yaml")
        )
        raise PlanInvalid(problems)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems.extend(describe_error(e, label, pos) for e in exc.errors())
        raise PlanInvalid(problems) from None
    problems.extend(check_plan(plan, pos, label, registry))
    if problems:
        raise PlanInvalid(problems)
    return plan, pos


def load_plan(path: str | Path, *, registry: ActionRegistry | None = None) -> Plan:
    """Read, parse and validate the plan file at ``path``; raise PlanInvalid on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanInvalid.one(p, 0, 0, "no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanInvalid.one(p, 0, 0, f"cannot read the plan: {exc}", "") from None
    plan, _ = load_plan_text(text, str(p), registry=registry)
    return plan
