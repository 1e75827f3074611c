"""Where each value of a plan file sits, and pydantic errors turned into plan problems."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from foundation.errors import PlanProblem
from streams.model import NAME_PATTERN, Plan, name_problem

__all__ = ["Loc", "Positions", "describe_error"]

Loc = tuple[str | int, ...]


@dataclass(slots=True)
class Positions:
    """1-based (line, column) of every value and every mapping key, by path."""

    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def at(self, loc: Iterable[str | int], *, key: bool = False) -> tuple[int, int]:
        """Best position for ``loc``: its key or value, else its nearest known parent.

        Path parts that name no node (pydantic's union-member tags) are skipped.
        """
        found: Loc = ()
        for part in loc:
            candidate = (*found, part)
            if candidate in self.values:
                found = candidate
        if key and found in self.keys:
            return self.keys[found]
        return self.values.get(found, (1, 1))


def _model_at(loc: Loc, root: type[BaseModel] = Plan) -> type[BaseModel] | None:
    """The pydantic model that the mapping at ``loc`` (under ``root``) is validated
    against, if any."""
    current: Any = root
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str):
                return None
            fields = {f.alias or name: f for name, f in current.model_fields.items()}
            if part not in fields:
                return None
            current = fields[part].annotation
            continue
        current = _unwrap(current, part)
        if current is None:
            return None
    current = _unwrap(current, None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any, part: str | int | None) -> Any:
    """Step into list/dict item types and through Optional/Annotated/unions to a model."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _unwrap(args[0], part)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in (_unwrap(a, None) for a in args) if a is not None]
        model = next((m for m in models if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if part is None:
            return model
        return _unwrap(model, part) if model is not None else None
    if part is None:
        return annotation
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict and isinstance(part, str):
        return args[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def describe_error(
    error: Any, label: str, pos: Positions, prefix: Loc = (), model: type[BaseModel] = Plan
) -> PlanProblem:
    """Turn one pydantic error into a PlanProblem at its place in the file.

    ``error["loc"]`` is relative to ``prefix`` in the file and to ``model`` (for example an
    action's parameters model validating a step's ``with:``).
    """
    loc: Loc = (*prefix, *error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        line, column = pos.at(loc, key=True)
        key = str(loc[-1])
        parent = _model_at(tuple(error["loc"])[:-1], model)
        allowed = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent else []
        import difflib  # only a plan with a problem needs it

        close = difflib.get_close_matches(key, allowed, n=1)
        fix = f"did you mean {close[0]!r}?" if close else "remove it."
        if allowed:
            fix += f" Allowed keys here: {', '.join(allowed)}"
        return PlanProblem(label, line, column, f"unknown key {key!r}", fix)
    if loc[-1:] == ("[key]",):  # a mapping's key failed: place it at the key
        loc = loc[:-1]
        line, column = pos.at(loc, key=True)
    else:
        line, column = pos.at(loc)
    where = ".".join(
        # a name refused for its characters is quoted with repr(), as every message does
        (p if p.isprintable() else repr(p)) if isinstance(p, str) else str(p)
        for p in loc
        if not (isinstance(p, str) and p[:1].isupper())
    )
    message = error["msg"]
    if kind == "missing":
        return PlanProblem(label, line, column, f"missing required key {where!r}", "add it")
    if kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == NAME_PATTERN:
        message = name_problem(str(error["input"]))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return PlanProblem(label, line, column, f"{where}: {message}", "")
