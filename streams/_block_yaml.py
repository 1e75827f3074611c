"""A reader for the plain block-style YAML that plans are nearly always written in.

libyaml builds an event, a node and two marks for every value before any data exists; for a
10,000-step plan that is most of the time validation takes. Most plans use a small part of
YAML: block mappings and sequences, one ``key: value`` per line, plain or simply quoted
scalars, ``[]`` / ``{}``, comments on lines of their own, and anchors and aliases of whole
values. :func:`read_block_yaml` reads exactly that part, one regular expression over the
text and a walk over its lines, and builds the same data PyYAML would (scalars are resolved
and built by PyYAML's own resolver and constructors).

Anything outside the part it knows raises :class:`Unsupported`, and the caller reads the
text with libyaml instead: flow collections, block scalars, multi-line scalars, tags,
inline comments, tabs, escapes, explicit keys, a duplicate key, a non-string key, an
alias past the loader's bounds, nesting near :data:`~streams._limits.MAX_DEPTH`,
characters YAML forbids. It never reports a problem itself, so every message and its
place still come from the positioned reader.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml

from streams._limits import MAX_ALIAS_VALUES, MAX_DEPTH

__all__ = ["Unsupported", "read_block_yaml"]


class Unsupported(Exception):
    """The text uses YAML this reader leaves to libyaml."""


# One line: its indentation, a block entry's dash, a simple key and its colon, the rest.
_LINE = re.compile(r"^( *)(- +)?(?:([A-Za-z0-9_][A-Za-z0-9_./-]*):(?= |$) *)?(.*)$", re.M)
# Characters outside this reader's part: tabs, CR, YAML's other line breaks (NEL, LS, PS),
# a byte-order mark, and whatever YAML forbids (libyaml refuses those with a position).
# Most plans are ASCII and need only the first; the second, a class of wide ranges, takes
# the regex compiler ~7 ms and is compiled on first use.
_OUTSIDE_ASCII = re.compile("[^\n\x20-\x7e]")


@functools.cache
def _outside() -> re.Pattern[str]:
    return re.compile(
        "[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
    )


_ANCHOR = re.compile(r"&([0-9A-Za-z_-]+)(?: +(.*))?$")
_ALIAS = re.compile(r"\*([0-9A-Za-z_-]+)$")
# Characters that may not start a plain scalar here ("-" is judged on its own).
_INDICATORS = frozenset("?:,[]{}#&*!|>'\"%@`")
_MAX_KEY = 1000  # libyaml refuses a simple key past 1,024 characters

_DASH, _KEY, _SCALAR = 0, 1, 2

_STR = "tag:yaml.org,2002:str"
_BUILT_TAGS = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "timestamp")
)
_resolver = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
# What PyYAML's safe constructors raise on values their resolvers let through.
_BUILD_ERRORS = (ValueError, KeyError, TypeError, OverflowError, AttributeError, IndexError)


@functools.lru_cache(maxsize=65536)
def _tag(value: str) -> str:
    return str(_resolver.resolve(yaml.ScalarNode, value, (True, False)))  # type: ignore[no-untyped-call]


@functools.lru_cache(maxsize=65536)
def _plain(text: str) -> Any:
    """PyYAML's value for the plain scalar ``text`` (stripped, on one line)."""
    first = text[0]
    if first in _INDICATORS or (first == "-" and (len(text) == 1 or text[1] == " ")):
        raise Unsupported
    if ": " in text or " #" in text or text[-1] == ":":
        raise Unsupported
    tag = _tag(text)
    if tag == _STR:
        return text
    if tag not in _BUILT_TAGS:  # a merge key, `=`: libyaml's path judges them
        raise Unsupported
    node = yaml.ScalarNode(tag, text)
    try:
        return _constructor.yaml_constructors[tag](_constructor, node)
    except _BUILD_ERRORS:
        raise Unsupported from None


def _scalar(text: str) -> Any:
    first = text[0]
    if first == "'" or first == '"':
        # A quoted string without escapes or doubled quotes is its content, unresolved.
        if len(text) < 2 or text[-1] != first or first in text[1:-1]:
            raise Unsupported
        if first == '"' and "\\" in text:
            raise Unsupported
        return text[1:-1]
    if text == "[]":
        return []
    if text == "{}":
        return {}
    return _plain(text)


@functools.lru_cache(maxsize=4096)
def _key(text: str) -> str:
    if len(text) > _MAX_KEY or _tag(text) != _STR:  # `yes:`, `1:`, `null:` are not strings
        raise Unsupported
    return text


def _tokens(text: str) -> list[tuple[int, int, str, str]]:
    """(column, kind, key, rest) per dash, key or scalar; blank and comment lines left out."""
    out: list[tuple[int, int, str, str]] = []
    append = out.append
    for indent, dash, key, rest in _LINE.findall(text):
        if rest and rest[-1] == " ":
            rest = rest.rstrip(" ")
        column = len(indent)
        if dash:
            append((column, _DASH, "", ""))
            column += len(dash)
            if key:
                append((column, _KEY, key, rest))
            elif rest:
                append((column, _SCALAR, "", rest))
            else:
                raise Unsupported  # `-` alone: its value is on the lines below
        elif key:
            append((column, _KEY, key, rest))
        elif rest and rest[0] != "#":
            raise Unsupported  # a value on a line of its own: a continued scalar, `---`
    return out


class _Reader:
    def __init__(self, tokens: list[tuple[int, int, str, str]]) -> None:
        self.tokens = tokens
        self.end = len(tokens)
        self.at = 0
        self.anchors: dict[str, Any] = {}
        self.named: set[str] = set()
        self.sizes: dict[int, tuple[int, int]] = {}  # (values, height) by id, for aliases
        self.expanded = 0

    def next_column(self) -> int:
        return self.tokens[self.at][0] if self.at < self.end else -1

    def value(self, rest: str, depth: int) -> Any:
        """The value written after a key or a dash: ``rest``, or the block below."""
        first = rest[:1]
        if first == "&":
            name, rest = self.anchor(rest)
            value = self.value(rest, depth)
            self.anchors[name] = value
            return value
        if first == "*":
            return self.alias(rest, depth)
        if rest:
            return _scalar(rest)
        return None

    def anchor(self, rest: str) -> tuple[str, str]:
        """The anchor's name and what follows it; a name used before (libyaml lets the
        later one win) or an anchored alias is left to libyaml."""
        match = _ANCHOR.match(rest)
        # An anchor counts from where it is written, not from where its value ends: one
        # reused inside its own value is a duplicate too.
        if match is None or match.group(1) in self.named:
            raise Unsupported
        self.named.add(match.group(1))
        after = match.group(2) or ""
        if after[:1] in ("&", "*"):
            raise Unsupported
        return match.group(1), after

    def alias(self, rest: str, depth: int) -> Any:
        match = _ALIAS.match(rest)
        if match is None or match.group(1) not in self.anchors:
            raise Unsupported
        value = self.anchors[match.group(1)]
        count, height = self.size(value)
        self.expanded += count
        # Bounds as the node-based readers apply them, judged there when they come close.
        if self.expanded > MAX_ALIAS_VALUES or depth + height >= MAX_DEPTH:
            raise Unsupported
        return value

    def size(self, value: Any) -> tuple[int, int]:
        """(values, height) of ``value``, keys counted, as :func:`streams._limits.measure`."""
        if isinstance(value, dict):
            children: list[Any] = [item for pair in value.items() for item in pair]
        elif isinstance(value, list):
            children = value
        else:
            return 1, 0
        known = self.sizes.get(id(value))
        if known is None:
            count, height = 1, 0
            for child in children:
                child_count, child_height = self.size(child)
                count += child_count
                height = max(height, child_height + 1)
            known = self.sizes[id(value)] = (count, height)
        return known

    def block_value(self, rest: str, column: int, depth: int) -> Any:
        """The value of the key at ``column`` whose line ended with ``rest``."""
        if rest and rest[0] == "&":
            name, rest = self.anchor(rest)
            value = self.block_value(rest, column, depth)
            self.anchors[name] = value
            return value
        if rest:
            value = self.value(rest, depth)
            if self.next_column() > column:
                raise Unsupported  # a continued scalar, or a nested block after a value
            return value
        below = self.next_column()
        if below > column:
            kind = self.tokens[self.at][1]
            if kind == _DASH:
                return self.sequence(below, depth)
            if kind == _KEY:
                return self.mapping(below, depth)
            raise Unsupported
        if below == column and self.tokens[self.at][1] == _DASH:
            return self.sequence(column, depth)  # a sequence written level with its key
        return None

    def mapping(self, column: int, depth: int) -> dict[str, Any]:
        if depth >= MAX_DEPTH:
            raise Unsupported
        tokens = self.tokens
        result: dict[str, Any] = {}
        while True:
            _, _, text, rest = tokens[self.at]
            key = _key(text)
            if key in result:
                raise Unsupported  # a duplicate key: reported at its place
            self.at += 1
            if rest and rest[0] != "&" and rest[0] != "*":  # the common case, inlined
                result[key] = _scalar(rest)
                if self.at < self.end and tokens[self.at][0] > column:
                    raise Unsupported  # a continued scalar, or a nested block after a value
            else:
                result[key] = self.block_value(rest, column, depth + 1)
            if self.at >= self.end:
                return result
            next_column, kind, _, _ = tokens[self.at]
            if next_column < column:
                return result
            if next_column > column or kind != _KEY:
                raise Unsupported

    def sequence(self, column: int, depth: int) -> list[Any]:
        if depth >= MAX_DEPTH:
            raise Unsupported
        tokens = self.tokens
        items: list[Any] = []
        while True:
            self.at += 1  # the dash
            item_column, kind, _, rest = tokens[self.at]
            if kind == _KEY:
                items.append(self.mapping(item_column, depth + 1))
            else:
                self.at += 1
                items.append(self.value(rest, depth + 1))
                if self.next_column() > column:
                    raise Unsupported
            if self.at >= self.end:
                return items
            next_column, kind, _, _ = tokens[self.at]
            if next_column == column and kind == _DASH:
                continue
            if next_column <= column:  # a key level with the dashes is the parent's
                return items
            raise Unsupported


def read_block_yaml(text: str) -> Any:
    """The data of YAML ``text``, as PyYAML's safe loader builds it; raise
    :class:`Unsupported` for text outside this reader's part of YAML."""
    outside = _OUTSIDE_ASCII if text.isascii() else _outside()
    if outside.search(text) is not None:
        raise Unsupported
    tokens = _tokens(text)
    if not tokens or tokens[0][0] != 0:
        raise Unsupported
    reader = _Reader(tokens)
    data = reader.sequence(0, 0) if tokens[0][1] == _DASH else reader.mapping(0, 0)
    if reader.at != reader.end:
        raise Unsupported
    return data
