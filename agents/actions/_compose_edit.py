"""Editing a docker-compose file in place: dotted paths, set and remove, keeping comments,
order and quoting (ruamel.yaml round trip)."""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.util import load_yaml_guess_indent

from agents.actions._compose_path import Key, parse_path
from foundation.errors import ActionFailed


@dataclass(frozen=True, slots=True)
class _Doc:
    """A YAML text with the dumper that reproduces its formatting."""

    text: str
    yaml: YAML
    data: Any

    @classmethod
    def load(cls, text: str, where: str) -> _Doc:
        try:
            _, seq_indent, offset = load_yaml_guess_indent(text)
        except YAMLError as exc:
            raise ActionFailed("compose.patch", f"{where}: not valid YAML: {exc}") from None
        yaml = YAML()
        yaml.preserve_quotes = True
        yaml.width = 4096
        yaml.explicit_start = text.lstrip().startswith("---")
        yaml.indent(mapping=_mapping_indent(text), sequence=seq_indent or 2, offset=offset or 0)
        data = yaml.load(text)
        if not isinstance(data, CommentedMap):
            raise ActionFailed("compose.patch", f"{where}: the top level is not a mapping")
        return cls(text, yaml, data)

    def dump(self) -> str:
        out = io.StringIO()
        self.yaml.dump(self.data, out)
        return out.getvalue()


def _mapping_indent(text: str) -> int:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for line, after in itertools.pairwise(lines):
        if line.rstrip().endswith(":") and not after.lstrip().startswith("-"):
            step = (len(after) - len(after.lstrip())) - (len(line) - len(line.lstrip()))
            if step > 0:
                return step
    return 2


class _Path:
    """One path resolved in a document: the containers along it and the final key. With
    ``create``, the walk stops at the first missing mapping key; ``missing`` holds the keys
    below it, for the caller to create as nested mappings."""

    def __init__(self, doc: _Doc, path: str, where: str, *, create: bool) -> None:
        self.path, self.where = path, where
        keys = parse_path(path)
        self.chain: list[tuple[Any, Key]] = []
        self.missing: list[Key] = []
        node: Any = doc.data
        for depth, raw in enumerate(keys):
            last = depth == len(keys) - 1
            key = self._key(node, raw, keys[:depth], missing_ok=last or create)
            self.chain.append((node, key))
            if last:
                break
            if isinstance(node, CommentedMap) and key not in node:
                self.missing = keys[depth + 1 :]
                if any(isinstance(k, int) for k in self.missing):
                    raise self.error(keys[: depth + 1], "does not exist: cannot make a list")
                break
            node = node[key]
            if not isinstance(node, CommentedMap | CommentedSeq):
                raise self.error(keys[: depth + 1], f"is {_kind(node)}, not a mapping or list")

    def error(self, at: Sequence[Key], reason: str) -> ActionFailed:
        shown = _show(at) or "the top level"
        return ActionFailed("compose.patch", f"{self.where}: {self.path}: {shown} {reason}")

    def _key(self, node: Any, raw: Key, at: Sequence[Key], *, missing_ok: bool) -> Key:
        if isinstance(node, CommentedSeq):
            if isinstance(raw, str) and not re.fullmatch(r"-?\d+", raw):
                return raw  # KEY in a list of KEY=value items
            index = int(raw)
            size = len(node)
            if -size <= index < size:
                return index % size
            if index == size and missing_ok:
                return index  # appends
            raise self.error([*at, raw], f"is out of range: the list has {size} items")
        if isinstance(raw, int):
            raise self.error(at, f"is a mapping, not a list: write .key, not [{raw}]")
        if raw in node or missing_ok:
            return raw
        known = ", ".join(str(k) for k in node) or "none"
        raise self.error([*at, raw], f"does not exist (keys there: {known})")

    @property
    def container(self) -> Any:
        return self.chain[-1][0]

    @property
    def key(self) -> Key:
        return self.chain[-1][1]


def _show(keys: Sequence[Key]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__.replace('Scalar', '')} value"


def _env_index(items: Sequence[Any], name: str) -> int | None:
    for at, item in enumerate(items):
        if isinstance(item, str) and (item == name or item.startswith(f"{name}=")):
            return at
    return None


def _to_yaml(value: Any, like: Any) -> Any:
    """Plain data as ruamel nodes, in the style (flow, quotes) of the node it replaces.
    Strings that YAML 1.1 readers (PyYAML, so docker-compose v1) would take for something
    else (``yes``, ``on``, ``1.0``, ``~``) are quoted."""
    if isinstance(value, Mapping):
        likes = like if isinstance(like, Mapping) else {}
        node: Any = CommentedMap((k, _to_yaml(v, likes.get(k))) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = like if isinstance(like, CommentedSeq) else ()
        quoted = [item for item in items if isinstance(item, _QUOTED)]
        node = CommentedSeq(_to_yaml(v, quoted[0] if quoted else None) for v in value)
    elif isinstance(value, str):
        if isinstance(like, _QUOTED):
            return type(like)(value)
        return value if _plain_is_str(value) else DoubleQuotedScalarString(value)
    else:
        return value
    if isinstance(like, CommentedMap | CommentedSeq) and like.fa.flow_style():
        node.fa.set_flow_style()
    return node


_QUOTED = (DoubleQuotedScalarString, SingleQuotedScalarString)


def _plain_is_str(value: str) -> bool:
    """Whether ``value`` written plain reads back as the same string in YAML 1.1 and 1.2."""
    try:
        return bool(pyyaml.safe_load(value) == value) and YAML(typ="safe").load(value) == value
    except (pyyaml.YAMLError, YAMLError):
        return False


def _trailing_slot(node: Any, key: Key) -> tuple[list[Any], int]:
    """The comment slot after entry ``key``'s last line (descending into block values)."""
    value = node[key]
    if isinstance(value, CommentedMap | CommentedSeq) and len(value) and not value.fa.flow_style():
        return _trailing_slot(value, _last_key(value))
    slots = node.ca.items.setdefault(key, [None, None, None, None])
    return slots, 2 if isinstance(node, CommentedMap) else 0


def _take_trailing(node: Any, key: Key) -> str:
    """Detach the comment lines after entry ``key`` (they belong to what follows it)."""
    slots, at = _trailing_slot(node, key)
    token = slots[at]
    if token is None or "\n" not in token.value:
        return ""
    eol, _, rest = token.value.partition("\n")
    token.value = eol + "\n"
    return str(rest)


def _give_trailing(node: Any, key: Key, rest: str) -> None:
    if rest:
        slots, at = _trailing_slot(node, key)
        if slots[at] is None:
            slots[at] = CommentToken("\n" + rest, CommentMark(0), None)
        else:
            slots[at].value += rest


def _set(doc: _Doc, path: str, value: Any, where: str) -> str:
    target = _Path(doc, path, where, create=True)
    node, key = target.container, target.key
    for missing in reversed(target.missing):
        value = {missing: value}
    if isinstance(node, CommentedSeq) and isinstance(key, str):  # environment: [KEY=value]
        if isinstance(value, Mapping | list):
            raise target.error(parse_path(path), "is a KEY=value list item: give a scalar")
        found = _env_index(node, key)
        key, value = (
            len(node) if found is None else found,
            key if value is None else f"{key}={value}",
        )
    if key in (node if isinstance(node, CommentedMap) else range(len(node))):
        rest = _take_trailing(node, key)
        node[key] = _to_yaml(value, node[key])
    else:
        rest = _take_trailing(node, _last_key(node)) if len(node) else ""
        if isinstance(node, CommentedMap):
            node[key] = _to_yaml(value, None)
        else:
            node.append(_to_yaml(value, None))
    _give_trailing(node, key, rest)
    return doc.dump()


def _last_key(node: Any) -> Key:
    return next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _line_of(node: Any, key: Key) -> int:
    return int(node.lc.key(key)[0] if isinstance(node, CommentedMap) else node.lc.item(key)[0])


def _remove(doc: _Doc, path: str, where: str) -> str:
    target = _Path(doc, path, where, create=False)
    node, key = target.container, target.key
    if isinstance(node, CommentedSeq) and isinstance(key, str):
        found = _env_index(node, key)
        if found is None:
            raise target.error(parse_path(path), "is not in the KEY=value list")
        key = found
    if len(node) == 1 and len(target.chain) > 1:  # keep an empty {} / [] rather than null
        parent, parent_key = target.chain[-2]
        parent[parent_key] = CommentedSeq() if isinstance(node, CommentedSeq) else CommentedMap()
        parent[parent_key].fa.set_flow_style()
        return doc.dump()
    lines = doc.text.splitlines(keepends=True)
    start = _line_of(node, key)
    block = not node.fa.flow_style() and not (
        isinstance(node, CommentedMap)
        and lines[start].lstrip().startswith("- ")
        and next(iter(node)) == key
    )
    if not block:  # flow style, or the first key of a "- key: v" item: let ruamel do it
        rest = _take_trailing(node, key)
        keys = list(node) if isinstance(node, CommentedMap) else list(range(len(node)))
        del node[key]
        before = keys[keys.index(key) - 1] if keys.index(key) > 0 else None
        if before is not None:
            _give_trailing(node, before, rest)
        return doc.dump()
    end = len(lines)
    for container, entry in reversed(
        [*target.chain[:-1], (node, key)]
    ):  # the next entry after this block
        entries = list(container) if isinstance(container, CommentedMap) else None
        position = entries.index(entry) if entries is not None else int(entry)
        size = len(container)
        if position + 1 < size:
            end = _line_of(container, entries[position + 1] if entries else position + 1)
            break
    indent = _indent(lines[start])
    while end - 1 > start and (
        not lines[end - 1].strip()
        or (lines[end - 1].lstrip().startswith("#") and _indent(lines[end - 1]) <= indent)
    ):
        end -= 1  # blank lines and comments at the end belong to what follows
    while (
        start > 0
        and lines[start - 1].lstrip().startswith("#")
        and (_indent(lines[start - 1]) == indent)
    ):
        start -= 1  # the comment block directly above belongs to the entry
    while (
        start > 0 and not lines[start - 1].strip() and (end >= len(lines) or not lines[end].strip())
    ):
        start -= 1  # one blank line between what was before and after is enough
    return "".join(lines[:start] + lines[end:])
