"""Loading a plan file (YAML or JSON) into a validated :class:`~streams.model.Plan`.

Every problem is reported with the file, line and column it comes from: malformed YAML,
duplicate keys, unknown keys (with the allowed ones and a close match), wrong types, and the
cross-reference checks of :mod:`streams.validation`. All problems are collected and raised
together as one :class:`~foundation.errors.PlanInvalid`.

A plan is first read on a fast path that records no positions: the plain block-style YAML
most plans are written in by :mod:`streams._block_yaml`, anything else by libyaml's C parser
and composer with plain data built straight from the node tree. Most plans are valid, and
a valid plan never needs a position. Only a plan with a problem, or with something the fast path
leaves to the careful one (an alias, a merge key, a duplicate or non-scalar key, a rare
tag, a value PyYAML cannot build), is read again with every position recorded, so every
problem is still placed exactly. Positions of a valid YAML plan are composed on first use.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from foundation.errors import PlanInvalid, PlanProblem
from streams._block_yaml import Unsupported, read_block_yaml
from streams._limits import (
    MAX_ALIAS_VALUES,
    MAX_DEPTH,
    MAX_PLAN_BYTES,
    Refused,
    deeper_than,
    json_too_deep_at,
    measure,
    too_big,
    too_deep,
    too_many_values,
    too_many_values_at,
)
from streams._positions import Loc, Positions, describe_error
from streams.agents_from import apply_agents_from
from streams.catalog import ActionCatalog
from streams.model import Plan
from streams.validation import check_plan

__all__ = ["Positions", "load_plan", "load_plan_text"]

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C when libyaml is there


_resolver = yaml.resolver.Resolver()


@functools.lru_cache(maxsize=65536)
def _resolve(kind: type, value: Any, implicit: Any) -> str:
    return str(_resolver.resolve(kind, value, implicit))  # type: ignore[no-untyped-call]


class _CachingLoader(_Loader):  # type: ignore[misc]
    """libyaml's loader with scalar tag resolution memoised in C (functools.lru_cache):
    plan files repeat the same keys and values thousands of times, and resolution is the
    slow, Python part of composing. Path resolvers are not used by safe loading, so the
    tag depends on (kind, value, implicit) alone."""

    resolve = staticmethod(_resolve)


# What PyYAML's safe constructors raise on values their resolvers let through.
_BUILD_ERRORS = (ValueError, KeyError, TypeError, OverflowError, AttributeError, IndexError)

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


class _Builder:
    """Builds plain data from a composed node tree, recording every position and
    reporting duplicate keys (which PyYAML would silently collapse).

    A list or mapping met a second time is an alias: what it expands to is measured on
    the node graph first (:func:`streams._limits.measure`), and the file is refused
    (:class:`~streams._limits.Refused`) past the bounds of :mod:`streams._limits`.
    """

    def __init__(self, loader: yaml.SafeLoader, label: str) -> None:
        self.loader = loader
        self.label = label
        self.pos = Positions()
        self.problems: list[PlanProblem] = []
        self.built: set[int] = set()  # ids of the lists and mappings built so far
        self.sizes: dict[int, tuple[int, int]] = {}  # measure's memo
        self.expanded = 0  # values added by aliases
        self.expanding = False  # inside an alias's expansion, which is counted already

    def build(self, node: yaml.Node, path: Loc) -> Any:
        self.pos.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value
            return self._construct(node)
        if len(path) >= MAX_DEPTH and node.value:
            raise too_deep(self.label, *self.pos.values[path])
        if self.expanding:
            return self._collection(node, path)
        if id(node) in self.built:
            self._count(node, path)
            self.expanding = True
            try:
                return self._collection(node, path)
            finally:
                self.expanding = False
        self.built.add(id(node))
        return self._collection(node, path)

    def _count(self, node: yaml.Node, path: Loc) -> None:
        """Add what ``node`` expands to at ``path``; refuse past MAX_ALIAS_VALUES."""
        count, _ = measure(node, len(path), self.label, self.sizes)
        self.expanded += count
        if self.expanded > MAX_ALIAS_VALUES:
            line, column = self.pos.values[path]
            raise Refused(
                PlanProblem(
                    self.label,
                    line,
                    column,
                    f"aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                    "(nested aliases multiply: a YAML alias bomb)",
                    "write the values out, or reuse blocks without nesting aliases of aliases",
                )
            )

    def _collection(self, node: yaml.Node, path: Loc) -> Any:
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            written = {id(key_node) for key_node, _ in node.value}
            if any(key_node.tag == _MERGE for key_node, _ in node.value):
                # `<<: *base`: the merged pairs come first; later pairs override them.
                # Measured first: PyYAML flattens recursively, a self-merge never ends.
                measure(node, len(path), self.label, self.sizes)
                self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            merged: set[Any] = set()
            for key_node, value_node in node.value:
                key_pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        PlanProblem(self.label, *key_pos, "a key must be a plain value", "")
                    )
                    continue
                key = key_node.value if key_node.tag == _STR else self._construct(key_node)
                if key in result and key not in merged:
                    self.problems.append(
                        PlanProblem(
                            self.label, *key_pos, f"duplicate key {key!r}", "keep only one of them"
                        )
                    )
                    continue
                if id(key_node) in written:
                    merged.discard(key)
                else:
                    merged.add(key)
                child = (*path, key)
                self.pos.keys[child] = key_pos
                result[key] = self.build(value_node, child)
            return result
        # Other tags (!!set, !!omap, ...): PyYAML builds them, within the same bounds.
        if not self.expanding:
            self._count(node, path)
        return self._construct(node, deep=True)

    def _construct(self, node: yaml.Node, *, deep: bool = False) -> Any:
        """PyYAML's value for a tagged or implicitly typed node; what it cannot build
        (2020-99-99, !!int abc, !!bool maybe, !!timestamp x, an int of 5,000 digits) is
        refused here."""
        try:
            return self.loader.construct_object(node, deep=deep)
        except _BUILD_ERRORS as exc:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            if "integer string conversion" in str(exc):
                raise _too_many_digits(self.label, line, column) from None
            kind = str(node.tag).rsplit(":", 1)[-1]
            shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else "this value"
            raise Refused(
                PlanProblem(
                    self.label,
                    line,
                    column,
                    f"{shown[:80]} is read as {'an' if kind[:1] in 'aeiou' else 'a'} {kind} "
                    "but is not a valid one",
                    "quote it to make it a string, or correct it",
                )
            ) from None


def _too_many_digits(label: str, line: int, column: int) -> Refused:
    return Refused(
        PlanProblem(
            label,
            line,
            column,
            f"a number of more than {sys.get_int_max_str_digits():,} digits",
            "write a shorter number, or quote it to make it a string",
        )
    )


def _yaml_problem(label: str, exc: yaml.YAMLError, text: str) -> PlanProblem:
    mark = getattr(exc, "problem_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        # A character YAML forbids anywhere: the reader stops at its first occurrence
        # (and libyaml counts its position in bytes), so find it in the text.
        index = max(text.find(chr(exc.character)), 0)
        line = text.count("\n", 0, index) + 1
        column = index - text.rfind("\n", 0, index)
        problem = f"{exc.reason}: character #x{exc.character:04x}"
    context = getattr(exc, "context", None)
    reason = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    return PlanProblem(label, line, column, reason, "fix the YAML syntax at this place")


# What valid JSON may hold and libyaml will not read: surrogate-pair escapes (json.dumps
# writes every emoji so), lone surrogate escapes, and characters YAML forbids or takes for
# line breaks. Escaped backslashes are matched first so that `\\u...` is left alone.
# Compiled on first use: a class of wide ranges takes the regex compiler ~7 ms.
@functools.cache
def _json_not_yaml() -> re.Pattern[str]:
    return re.compile(
        r"\\\\"
        r"|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
        r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
        "|[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
    )


def _json_for_yaml(match: re.Match[str]) -> str:
    """A replacement of the same length, so every position stays where it was."""
    found = match.group()
    if found == "\\\\":
        return found
    if len(found) == 12:  # a surrogate pair: the character it stands for, padded
        high, low = int(found[2:6], 16), int(found[8:12], 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}__"
    return "\\ufffd" if len(found) == 6 else "\ufffd"


def _parse(text: str, label: str) -> tuple[Any, Positions, list[PlanProblem]]:
    if label.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanInvalid.one(
                label, exc.lineno, exc.colno, f"malformed JSON: {exc.msg}", "fix the JSON syntax"
            ) from None
        except RecursionError:  # nested hundreds deep: find the first level too many
            line, column = json_too_deep_at(text) or (1, 1)
            raise PlanInvalid([too_deep(label, line, column).problem]) from None
        except ValueError:  # an int past sys.get_int_max_str_digits()
            digits = re.search(rf"\d{{{sys.get_int_max_str_digits() + 1},}}", text)
            index = digits.start() if digits is not None else 0
            line, column = text.count("\n", 0, index) + 1, index - text.rfind("\n", 0, index)
            raise PlanInvalid([_too_many_digits(label, line, column).problem]) from None
    is_json = label.endswith(".json")
    # Positions of a JSON plan come from YAML, which reads nearly all JSON as it is.
    yaml_text = _json_not_yaml().sub(_json_for_yaml, text) if is_json else text
    too_many = too_many_values_at(yaml_text)
    if too_many is not None:
        if is_json:  # read already: its problems are reported, without positions
            return data, Positions(), []
        raise PlanInvalid([too_many_values(label, *too_many).problem])
    loader = _CachingLoader(yaml_text)
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, label)
        built = builder.build(node, ()) if node is not None else None
    except Refused as exc:
        raise PlanInvalid([exc.problem]) from None
    except yaml.YAMLError as exc:
        if label.endswith(".json"):  # valid JSON that YAML 1.1 cannot read: no positions
            return data, Positions(), []
        raise PlanInvalid([_yaml_problem(label, exc, text)]) from None
    finally:
        loader.dispose()
    return (data if label.endswith(".json") else built), builder.pos, builder.problems


class _Slow(Exception):
    """The fast path met something only the positioned path may judge."""


class _Plain:
    """Builds plain data from a node tree without positions, as :class:`_Builder` would;
    raises :class:`_Slow` wherever :class:`_Builder` might report a problem."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.seen: set[int] = set()  # ids of the lists and mappings built so far
        self.sizes: dict[int, tuple[int, int]] = {}  # measure's memo
        self.expanded = 0  # values added by aliases
        self.expanding = False  # inside an alias's expansion, which is counted already

    def build(self, node: yaml.Node, depth: int) -> Any:
        kind = type(node)
        if kind is yaml.ScalarNode:
            if node.tag == _STR:
                return node.value
            return self.loader.construct_object(node)
        if depth >= MAX_DEPTH and node.value:
            raise _Slow
        if not self.expanding:
            if id(node) in self.seen:  # an alias: counted, then expanded like _Builder
                count, _ = measure(node, depth, "", self.sizes)
                self.expanded += count
                if self.expanded > MAX_ALIAS_VALUES:
                    raise _Slow
                self.expanding = True
                try:
                    return self._collection(node, kind, depth)
                finally:
                    self.expanding = False
            self.seen.add(id(node))
        return self._collection(node, kind, depth)

    def _collection(self, node: yaml.Node, kind: type, depth: int) -> Any:
        if kind is yaml.MappingNode and node.tag == _MAP:
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if type(key_node) is not yaml.ScalarNode or key_node.tag == _MERGE:
                    raise _Slow
                tag = key_node.tag
                key = key_node.value if tag == _STR else self.loader.construct_object(key_node)
                if key in result:
                    raise _Slow  # a duplicate key: reported at its place
                result[key] = self.build(value_node, depth + 1)
            return result
        if kind is yaml.SequenceNode and node.tag == _SEQ:
            return [self.build(item, depth + 1) for item in node.value]
        raise _Slow  # !!set, !!omap, a merge: bounded and placed by the positioned path


def _fast_yaml(text: str) -> Any:
    """The data of YAML ``text`` read without positions, or raise :class:`_Slow`."""
    if too_many_values_at(text) is not None:
        raise _Slow
    with contextlib.suppress(Unsupported):
        return read_block_yaml(text)
    loader = _CachingLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _Plain(loader).build(node, 0)
    except (yaml.YAMLError, Refused, RecursionError, *_BUILD_ERRORS) as exc:
        raise _Slow from exc
    finally:
        loader.dispose()


# The slots of Positions, under the properties that fill them on first use.
_VALUES: Any = Positions.__dict__["values"]
_KEYS: Any = Positions.__dict__["keys"]


class _LazyPositions(Positions):
    """Positions of a valid YAML plan, composed from its text on first use."""

    __slots__ = ("_source",)

    def __init__(self, text: str, label: str) -> None:
        self._source: tuple[str, str] | None = None
        super().__init__()
        self._source = (text, label)

    def _fill(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            with contextlib.suppress(PlanInvalid), _gc_paused():
                _, pos, _ = _parse(*source)
                _VALUES.__set__(self, pos.values)
                _KEYS.__set__(self, pos.keys)

    def _get_values(self) -> dict[Loc, tuple[int, int]]:
        self._fill()
        return _VALUES.__get__(self)  # type: ignore[no-any-return]

    def _set_values(self, value: dict[Loc, tuple[int, int]]) -> None:
        _VALUES.__set__(self, value)

    def _get_keys(self) -> dict[Loc, tuple[int, int]]:
        self._fill()
        return _KEYS.__get__(self)  # type: ignore[no-any-return]

    def _set_keys(self, value: dict[Loc, tuple[int, int]]) -> None:
        _KEYS.__set__(self, value)

    values = property(_get_values, _set_values)
    keys = property(_get_keys, _set_keys)


def _valid_yaml_plan(text: str, label: str, registry: ActionCatalog | None) -> Plan | None:
    """The plan if the YAML text is valid, else None (the positioned path then says why)."""
    try:
        data = _fast_yaml(text)
        plan = Plan.model_validate(data)
    except (_Slow, ValidationError, RecursionError):
        return None
    if _too_deep_parameters(plan):
        return None
    return None if check_plan(plan, Positions(), label, registry) else plan


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """CPython's cyclic GC off while a plan loads: a plan's node tree and data are
    hundreds of thousands of acyclic objects, and the collections they set off would
    rescan them all, several times over (5x the composition's own cost for 10,000 steps).
    Nothing is lost: cycles made meanwhile are collected after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_plan_text(
    text: str, label: str = "<plan>", *, registry: ActionCatalog | None = None
) -> tuple[Plan, Positions]:
    """Parse and validate plan ``text``; ``label`` names the file in errors.

    ``registry`` (an :class:`~streams.catalog.ActionCatalog`, such as
    ``agents.builtin_registry()``) checks actions and their ``with:`` parameters; when it is
    None they are not checked (:func:`agents.plans.load_plan_text` passes the built-in
    actions). Raises PlanInvalid.
    """
    with _gc_paused():
        return _load_plan_text(text, label, registry)


def _load_plan_text(
    text: str, label: str, registry: ActionCatalog | None
) -> tuple[Plan, Positions]:
    if len(text) > MAX_PLAN_BYTES:
        raise PlanInvalid([too_big(label).problem])
    # A plan with `agents_from` takes the careful path: its definitions are merged there.
    if label.endswith(".json"):
        valid = _valid_json_plan(text, label, registry)
        if valid is not None and not valid.agents_from:
            return valid, Positions()
    else:
        valid = _valid_yaml_plan(text, label, registry)
        if valid is not None and not valid.agents_from:
            return valid, _LazyPositions(text, label)
    data, pos, problems = _parse(text, label)
    if not isinstance(data, dict):
        problems.append(
            PlanProblem(
                label,
                1,
                1,
                "a plan file must be a mapping of keys to values",
                "start from examples/phase2.yaml",
            )
        )
        raise PlanInvalid(problems)
    data, issues = apply_agents_from(data, Path(label).parent)
    problems.extend(PlanProblem(label, *pos.at(loc), reason, fix) for loc, reason, fix in issues)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems.extend(describe_error(e, label, pos) for e in exc.errors())
        raise PlanInvalid(problems) from None
    problems.extend(check_plan(plan, pos, label, registry))
    if problems:
        raise PlanInvalid(problems)
    return plan, pos


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _valid_json_plan(text: str, label: str, registry: ActionCatalog | None) -> Plan | None:
    """The plan if the JSON text is valid, else None.

    A JSON plan is read at C speed first; only a plan with a problem pays for libyaml's
    node-by-node composition, which is what gives every problem its line and column.
    """
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
        plan = Plan.model_validate(data)
    except (ValueError, RecursionError, _DuplicateKey, ValidationError):
        return None
    if _too_deep_parameters(plan):
        return None
    return None if check_plan(plan, Positions(), label, registry) else plan


def _too_deep_parameters(plan: Plan) -> bool:
    """Whether a ``with:`` (the plan's only free-form values) nests past MAX_DEPTH; the
    slow path then places the problem."""
    for stream in plan.streams:
        rollback = stream.rollback.steps if stream.rollback is not None else []
        # streams[i].steps[j].with and streams[i].rollback.steps[j].with(.undo.with)
        for steps, depth in ((stream.steps, 5), (rollback, 6)):
            for step in steps:
                if deeper_than(step.with_, MAX_DEPTH - depth):
                    return True
                undo = step.undo
                if undo is not None and deeper_than(undo.with_, MAX_DEPTH - depth - 1):
                    return True
    return False


def load_plan(path: str | Path, *, registry: ActionCatalog | None = None) -> Plan:
    """Read, parse and validate the plan file at ``path``; raise PlanInvalid on any problem."""
    p = Path(path)
    try:
        with p.open("rb") as file:  # bounded: a device or a huge file is not read whole
            raw = file.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise PlanInvalid.one(p, 0, 0, "no such file", "check the path") from None
    except OSError as exc:
        raise PlanInvalid.one(
            p, 0, 0, f"cannot read the plan: {exc}", "check the path and its permissions"
        ) from None
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanInvalid([too_big(str(p)).problem])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1 : exc.start].decode()) + 1
        raise PlanInvalid.one(
            p,
            line,
            column,
            f"not UTF-8: byte 0x{raw[exc.start]:02x} cannot start or continue a character",
            "save the file as UTF-8",
        ) from None
    # As Path.read_text reads: universal newlines.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    plan, _ = load_plan_text(text, str(p), registry=registry)
    return plan
