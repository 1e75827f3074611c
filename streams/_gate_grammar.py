r"""The gate criterion grammar: tokenizer, recursive-descent parser and canonical text.

A gate is a threshold and a list of criteria. Each criterion is an expression over metrics,
parsed by the hand-written tokenizer and recursive-descent parser below (never ``eval``)::

    redis.noauth_errors == 0
    db.response_ms.p50 < 100 and db.pool.waiting <= 2
    gpu.mode == "exclusive" or (gpu.utilization_pct > 50 and not gpu.throttled == true)
    gpu.utilization_pct > 50 weight 2

Grammar (EBNF; spaces, tabs and line breaks between tokens are free)::

    criterion   = expression [ "weight" number ] ;
    expression  = conjunction { "or" conjunction } ;
    conjunction = negation { "and" negation } ;
    negation    = "not" negation | "(" expression ")" | comparison ;
    comparison  = metric ( "==" | "!=" ) value
                | metric ( "<" | "<=" | ">" | ">=" ) number ;
    value       = number | string | "true" | "false" ;
    metric      = head { "." part } ;    (* a reserved word alone is not a metric *)
    head        = ( letter | "_" ) { letter | digit | "_" | "-" } ;
    part        = ( letter | digit | "_" ) { letter | digit | "_" | "-" } ;
    number      = [ "+" | "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
    string      = "'" { character | escape } "'" | '"' { character | escape } '"' ;
    escape      = "\\" ( "\\" | "'" | '"' ) ;

Letters and digits are ASCII. The reserved words are ``and``, ``or``, ``not``, ``true``,
``false`` and ``weight`` (lower-case); ``not`` binds tighter than ``and``, which binds
tighter than ``or``; both are left-associative. Ordering (``<`` ...) compares numbers only, so
``status < "ok"`` is refused when the plan is checked, not when the gate runs. Strings hold
no control characters. A criterion holds at most 100 comparisons and 50 levels of nesting.

Weights: each criterion weighs 1 unless it says otherwise, either inline with a trailing
``weight N`` (it weighs the whole criterion) or in the YAML form ``{expr: ..., weight: N}``;
giving both is an error, as is a weight that is not a positive finite number. The inline form
is a keyword rather than ``[weight=2]`` because it stays a plain YAML scalar inside a flow
list (``criteria: [a > 1 weight 2, b < 3]``), where brackets, commas and ``: `` would not.
"""

from __future__ import annotations

import enum
import math
import operator
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast

from foundation.errors import OrchestratorError

__all__ = [
    "MAX_COMPARISONS",
    "MAX_DEPTH",
    "RESERVED_WORDS",
    "And",
    "Comparison",
    "Expr",
    "GateSyntaxError",
    "Not",
    "Op",
    "Or",
    "ParsedCriterion",
    "Value",
    "parse_criterion",
    "to_text",
]

Op = Literal["==", "!=", "<", "<=", ">", ">="]
Value: TypeAlias = bool | int | float | str

RESERVED_WORDS = frozenset({"and", "or", "not", "true", "false", "weight"})
MAX_COMPARISONS = 100
MAX_DEPTH = 50

_HEAD = frozenset(string.ascii_letters + "_")
_PART_START = _HEAD | frozenset(string.digits)
_NAME = _PART_START | {"-"}
_DIGITS = frozenset(string.digits)
_SPACE = " \t\r\n"
_ORDERING = frozenset({"<", "<=", ">", ">="})
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_COMPARISONS_HINT = "(==, !=, <, <=, >, >=)"


class GateSyntaxError(OrchestratorError):
    """A gate criterion that cannot be used: ``column`` (1-based, in characters of
    ``text``; 0 when the problem is the YAML ``weight:`` rather than the expression) and a
    ``reason`` saying what was expected there. ``criterion`` is the index in the gate's
    criteria when known."""

    exit_code = 2

    def __init__(
        self, text: str, column: int, reason: str, *, criterion: int | None = None
    ) -> None:
        self.text = text
        self.column = column
        self.reason = reason
        self.criterion = criterion
        where = f"column {column}: " if column else ""
        head = f"criteria[{criterion}] {text!r}: " if criterion is not None else ""
        super().__init__(f"{head}{where}{reason}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_metric(name: str) -> bool:
    if name in RESERVED_WORDS or not name or name[0] not in _HEAD:
        return False
    return all(part and part[0] in _PART_START and set(part) <= _NAME for part in name.split("."))


# -- the expression tree ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """``metric op value``; ordering operators take numbers only (checked on creation)."""

    metric: str
    op: Op
    value: Value

    def __post_init__(self) -> None:
        # Checked here too so that every tree to_text() renders parses back.
        if not _is_metric(self.metric):
            raise ValueError(f"not a metric name: {self.metric!r}")
        if self.op not in _COMPARE:
            raise ValueError(f"not a comparison: {self.op!r}")
        if self.op in _ORDERING and not _is_number(self.value):
            raise ValueError(f"{self.op!r} compares numbers, not {self.value!r}")
        if isinstance(self.value, float) and not math.isfinite(self.value):
            raise ValueError(f"not a finite number: {self.value!r}")
        if isinstance(self.value, str) and any(ord(c) < 0x20 or c == "\x7f" for c in self.value):
            raise ValueError("strings in criteria hold no control characters")


@dataclass(frozen=True, slots=True)
class And:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Or:
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


Expr: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class ParsedCriterion:
    """A parsed criterion: its expression and its inline weight (None when not written).
    ``weight_column`` (where ``weight`` was written) takes no part in equality."""

    expr: Expr
    weight: float | None = None
    weight_column: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        if self.weight is not None and not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"a weight is a positive finite number, not {self.weight!r}")


# -- tokenizer ----------------------------------------------------------------------------


class _Kind(enum.Enum):
    NAME = enum.auto()
    WORD = enum.auto()  # a reserved word
    NUMBER = enum.auto()
    STRING = enum.auto()
    OP = enum.auto()
    OPEN = enum.auto()
    CLOSE = enum.auto()
    END = enum.auto()


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str
    column: int
    value: Value | None = None


def _describe(token: _Token) -> str:
    """How an error message names the token it found."""
    if token.kind is _Kind.END:
        return "end of expression"
    if token.kind is _Kind.NAME:
        hint = " (keywords are lower-case)" if token.text.lower() in RESERVED_WORDS else ""
        return f"the name '{token.text}'{hint}"
    if token.kind is _Kind.NUMBER:
        return f"the number {token.text}"
    if token.kind is _Kind.STRING:
        return f"the string {token.text}"
    return f"'{token.text}'"


class _Lexer:
    """Yields one token at a time, so that the parser reports the leftmost problem."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        # End of expression is reported right after the last written character.
        self.end_column = len(text.rstrip(_SPACE)) + 1

    def error(self, pos: int, reason: str) -> GateSyntaxError:
        column = pos + 1 if pos < len(self.text.rstrip(_SPACE)) else self.end_column
        return GateSyntaxError(self.text, column, reason)

    def char(self, pos: int) -> str:
        """Names the character at ``pos`` in a message."""
        if pos >= len(self.text) or self.text[pos] in _SPACE:
            return "a space" if pos < len(self.text.rstrip(_SPACE)) else "end of expression"
        return repr(self.text[pos])

    def next(self) -> _Token:
        text = self.text
        while self.pos < len(text) and text[self.pos] in _SPACE:
            self.pos += 1
        start = self.pos
        if start >= len(text):
            return _Token(_Kind.END, "", self.end_column)
        ch, two = text[start], text[start : start + 2]
        if ch in _HEAD:
            token = self._name(start)
        elif ch in _DIGITS or ch in "+-":
            token = self._number(start)
        elif ch in "'\"":
            token = self._string(start)
        elif two in ("==", "!=", "<=", ">="):
            token = _Token(_Kind.OP, two, start + 1)
        elif ch in "<>":
            token = _Token(_Kind.OP, ch, start + 1)
        elif ch in "()":
            token = _Token(_Kind.OPEN if ch == "(" else _Kind.CLOSE, ch, start + 1)
        else:
            raise self.error(start, self._stray(start))
        self.pos = start + len(token.text)
        return token

    def _stray(self, pos: int) -> str:
        ch, after = self.text[pos], self.text[pos + 1 : pos + 2]
        if ch == "=":
            if after in ("<", ">"):
                return f"'={after}' is not a comparison; write '{after}='"
            return "'=' is not a comparison; write '==' to compare for equality"
        if ch == "!":
            return "'!' is not an operator; write '!=' or 'not'"
        if ch in "&|":
            return f"'{ch}' is not an operator; write '{'and' if ch == '&' else 'or'}'"
        if ch == "." and after in _DIGITS:
            return "a number starts with a digit: write 0.5, not .5"
        return f"unexpected character {ch!r}"

    def _name(self, start: int) -> _Token:
        text, pos = self.text, start + 1
        while pos < len(text):
            if text[pos] in _NAME:
                pos += 1
            elif text[pos] == ".":
                if text[pos + 1 : pos + 2] not in _PART_START:  # also true at the end
                    raise self.error(
                        pos + 1,
                        f"expected a letter, digit or '_' after '.' in "
                        f"'{text[start : pos + 1]}', found {self.char(pos + 1)}",
                    )
                pos += 2
            else:
                break
        word = text[start:pos]
        return _Token(
            _Kind.WORD if word in RESERVED_WORDS else _Kind.NAME,
            word,
            start + 1,
            True if word == "true" else False if word == "false" else None,
        )

    def _digits(self, pos: int, after: str) -> int:
        if pos >= len(self.text) or self.text[pos] not in _DIGITS:
            raise self.error(pos, f"expected a digit after {after}, found {self.char(pos)}")
        while pos < len(self.text) and self.text[pos] in _DIGITS:
            pos += 1
        return pos

    def _number(self, start: int) -> _Token:
        text = self.text
        # A leading sign needs a digit after it; otherwise the lexer came here on a digit.
        pos = (
            self._digits(start + 1, f"'{text[start]}'")
            if text[start] in "+-"
            else self._digits(start, "a sign")
        )
        is_float = False
        if text[pos : pos + 1] == ".":
            pos, is_float = self._digits(pos + 1, f"'.' in '{text[start : pos + 1]}'"), True
        if text[pos : pos + 1] in ("e", "E"):
            pos, is_float = pos + 1, True
            if text[pos : pos + 1] in ("+", "-"):
                pos += 1
            pos = self._digits(pos, f"the exponent in '{text[start:pos]}'")
        literal = text[start:pos]
        if pos < len(text) and (text[pos] in _NAME or text[pos] == "."):
            raise self.error(
                pos,
                f"unexpected {text[pos]!r} right after the number {literal}: a value is a "
                "number, a quoted string, true or false (units belong in the metric name, "
                "e.g. latency_ms < 5)",
            )
        value: int | float
        try:
            value = float(literal) if is_float else int(literal)
        except ValueError:  # more digits than int() converts
            raise self.error(start, f"the number {literal[:20]}... is too long") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(start, f"the number {literal} is out of range")
        return _Token(_Kind.NUMBER, literal, start + 1, value)

    def _string(self, start: int) -> _Token:
        text, quote, pos = self.text, self.text[start], start + 1
        chars: list[str] = []
        while True:
            if pos >= len(text):
                raise self.error(start, f"this string is never closed: add the closing {quote}")
            ch = text[pos]
            if ch == quote:
                break
            if ch == "\\":
                escaped = text[pos + 1 : pos + 2]
                if not escaped:
                    raise self.error(start, f"this string is never closed: add the closing {quote}")
                if escaped not in ("\\", "'", '"'):
                    raise self.error(
                        pos,
                        f"unknown escape '\\{escaped}' in a string; only "
                        "\\\\, \\' and \\\" are escapes",
                    )
                chars.append(escaped)
                pos += 2
                continue
            if ord(ch) < 0x20 or ch == "\x7f":
                raise self.error(pos, f"control character {ch!r} in a string")
            chars.append(ch)
            pos += 1
        return _Token(_Kind.STRING, text[start : pos + 1], start + 1, "".join(chars))


# -- parser -------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.lexer = _Lexer(text)
        self.token = self.lexer.next()
        self.depth = 0
        self.comparisons = 0

    def error(self, token: _Token, reason: str) -> GateSyntaxError:
        return GateSyntaxError(self.lexer.text, token.column, reason)

    def advance(self) -> _Token:
        token, self.token = self.token, self.lexer.next()
        return token

    def at_word(self, word: str) -> bool:
        return self.token.kind is _Kind.WORD and self.token.text == word

    def criterion(self) -> ParsedCriterion:
        expr = self.expression()
        if not self.at_word("weight"):
            if self.token.kind is not _Kind.END:
                raise self.error(
                    self.token,
                    "expected 'and', 'or', 'weight' or end of expression, found "
                    + _describe(self.token),
                )
            return ParsedCriterion(expr)
        weight_column = self.advance().column
        number = self.token
        if number.kind is not _Kind.NUMBER:
            raise self.error(number, f"expected a number after 'weight', found {_describe(number)}")
        try:
            weight = float(cast(int | float, number.value))
        except OverflowError:
            raise self.error(number, f"the weight {number.text} is out of range") from None
        if not weight > 0:
            raise self.error(number, f"a weight must be greater than 0, found {number.text}")
        self.advance()
        if self.token.kind is not _Kind.END:
            raise self.error(
                self.token,
                f"expected end of expression after 'weight {number.text}' (the weight "
                f"comes last), found {_describe(self.token)}",
            )
        return ParsedCriterion(expr, weight, weight_column)

    def expression(self) -> Expr:
        left = self.conjunction()
        while self.at_word("or"):
            self.advance()
            left = Or(left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.negation()
        while self.at_word("and"):
            self.advance()
            left = And(left, self.negation())
        return left

    def negation(self) -> Expr:
        token = self.token
        if self.at_word("not") or token.kind is _Kind.OPEN:
            # Bounded so that parsing, rendering and evaluation stay far from the
            # interpreter's recursion limit.
            if self.depth >= MAX_DEPTH:
                raise self.error(
                    token, f"nested more than {MAX_DEPTH} levels deep; simplify the criterion"
                )
            self.advance()
            self.depth += 1
            try:
                if token.kind is _Kind.WORD:
                    return Not(self.negation())
                inner = self.expression()
            finally:
                self.depth -= 1
            if self.token.kind is not _Kind.CLOSE:
                raise self.error(
                    self.token,
                    f"expected 'and', 'or' or ')' to close the '(' at column {token.column}, "
                    f"found {_describe(self.token)}",
                )
            self.advance()
            return inner
        if token.kind is _Kind.NAME:
            return self.comparison()
        hint = ""
        if token.kind in (_Kind.NUMBER, _Kind.STRING) or token.text in ("true", "false"):
            hint = " (write the metric first, e.g. 'gpu.utilization_pct > 50')"
        elif token.text == "weight":
            hint = " ('weight' is reserved; it cannot name a metric on its own)"
        raise self.error(
            token, f"expected a metric name, '(' or 'not', found {_describe(token)}{hint}"
        )

    def comparison(self) -> Comparison:
        name = self.token
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error(
                name,
                f"more than {MAX_COMPARISONS} comparisons in one criterion; "
                "split it into several criteria",
            )
        self.advance()
        op = self.token
        if op.kind is not _Kind.OP:
            raise self.error(
                op,
                f"expected a comparison {_COMPARISONS_HINT} after '{name.text}', "
                f"found {_describe(op)}",
            )
        self.advance()
        value = self.token
        is_value = value.value is not None  # numbers, strings, true and false carry one
        if op.text in _ORDERING and value.kind is not _Kind.NUMBER:
            extra = " (only == and != compare strings, true and false)" if is_value else ""
            raise self.error(
                value, f"expected a number after '{op.text}'{extra}, found {_describe(value)}"
            )
        if not is_value:
            raise self.error(
                value,
                f"expected a number, a quoted string, true or false after '{op.text}', "
                f"found {_describe(value)}",
            )
        self.advance()
        return Comparison(name.text, cast(Op, op.text), cast(Value, value.value))


def parse_criterion(text: str) -> ParsedCriterion:
    """Parse one criterion (expression and optional trailing ``weight N``).

    Raises :class:`GateSyntaxError` at the column of the first offending token.
    """
    return _Parser(text).criterion()


# -- rendering ----------------------------------------------------------------------------


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _literal(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _number_text(value)


def _show(value: Value) -> str:
    """A measured value in a reason: 84.0 shows as 84, long strings are cut."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    if isinstance(value, str) and len(value) > 60:
        return _literal(value[:57] + "...")
    return _literal(value)


_PRECEDENCE = {Or: 1, And: 2, Not: 3, Comparison: 4}


def _render(node: Expr, minimum: int) -> str:
    """``node`` as text, parenthesised when it binds looser than ``minimum``."""
    if isinstance(node, Comparison):
        return f"{node.metric} {node.op} {_literal(node.value)}"
    if isinstance(node, Not):
        text = "not " + _render(node.operand, 3)
    else:
        level, word = (1, "or") if isinstance(node, Or) else (2, "and")
        # Left-associative: a right operand of the same level needs parentheses.
        text = f"{_render(node.left, level)} {word} {_render(node.right, level + 1)}"
    return f"({text})" if _PRECEDENCE[type(node)] < minimum else text


def to_text(node: Expr | ParsedCriterion) -> str:
    """Canonical text of ``node``: single spaces, double-quoted strings, the fewest
    parentheses; ``parse_criterion(to_text(c)) == c`` for every criterion ``c``."""
    if isinstance(node, ParsedCriterion):
        text = _render(node.expr, 0)
        if node.weight is None:
            return text
        weight = node.weight
        shown = str(int(weight)) if weight.is_integer() and weight < 1e16 else repr(weight)
        return f"{text} weight {shown}"
    return _render(node, 0)


# -- a gate's criteria, with one weight each ----------------------------------------------
