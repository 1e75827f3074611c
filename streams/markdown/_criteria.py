"""Success criteria written in words, turned into gate expressions (:mod:`streams.gates`).

Metric names are made from the words, the same way every time:

* the namespace is the stream's first title word, lower-case ASCII, with the abbreviations
  ``database -> db``, ``authentication -> auth``, ``communication -> comm``,
  ``performance -> perf``, ``kubernetes -> k8s`` (``GPU Optimization`` -> ``gpu``,
  ``Database Performance`` -> ``db``, ``Redis Authentication`` -> ``redis``);
* the name is the criterion's subject: its ASCII words joined by ``_``, without a leading
  word that repeats the namespace (``GPU utilization`` in the GPU stream -> ``utilization``),
  cut before a connector (``in``, ``with``, ``from``, ...), and with the unit as a suffix:
  ``%`` -> ``_pct``, ``ms``, ``s``, ``min``, ``h``, ``kb``/``mb``/``gb``, ``rps``, ``x``.
  With a time unit a last word ``time`` is dropped, since the unit says it
  (``Response time <100ms`` -> ``db.response_ms < 100``).

Forms understood: ``SUBJECT OP NUMBER[UNIT][+] [anything]`` with ``OP`` one of ``> < >= <=
≥ ≤ = ==`` or the words *at least, at most, no more than, no less than, more than, greater
than, less than, fewer than, above, over, below, under, exceeding, within*; ``NUMBER%+
SUBJECT`` (at least); ``Zero/No/0 SUBJECT`` (``== 0``); ``100% SUBJECT`` (``>= 100``);
``SUBJECT: NUMBER[UNIT]`` (``Snapshot checksum mismatches: 0`` -> ``== 0``).
A bare percentage such as ``5% error rate`` does not say whether it is a floor or a ceiling,
and is reported rather than guessed. Every expression made is checked with
:func:`streams.gates.parse_criterion`, so none the gate grammar rejects is ever produced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streams.gates import GateSyntaxError, parse_criterion
from streams.markdown._text import ascii_words, strip_emphasis

__all__ = ["Translation", "metric_namespace", "translate"]

_ABBREVIATIONS = {
    "database": "db",
    "authentication": "auth",
    "communication": "comm",
    "performance": "perf",
    "kubernetes": "k8s",
}
_UNIT_SUFFIX = {
    "%": "pct",
    "percent": "pct",
    "ms": "ms",
    "s": "s",
    "sec": "s",
    "secs": "s",
    "seconds": "s",
    "min": "min",
    "mins": "min",
    "minutes": "min",
    "h": "h",
    "hours": "h",
    "kb": "kb",
    "mb": "mb",
    "gb": "gb",
    "rps": "rps",
    "qps": "qps",
    "x": "x",
}
_TIME_UNITS = {"ms", "s", "min", "h"}
_CONNECTORS = {
    "in",
    "with",
    "from",
    "for",
    "during",
    "across",
    "on",
    "at",
    "via",
    "after",
    "per",
    "when",
    "while",
    "by",
    "compared",
    "versus",
    "vs",
}
_ARTICLES = {"the", "a", "an"}
_WORD_OPS = {
    "at least": ">=",
    "no less than": ">=",
    "at most": "<=",
    "no more than": "<=",
    "within": "<=",
    "more than": ">",
    "greater than": ">",
    "above": ">",
    "over": ">",
    "exceeding": ">",
    "less than": "<",
    "fewer than": "<",
    "below": "<",
    "under": "<",
}
_SYMBOL_OPS = {">=": ">=", "<=": "<=", "==": "==", "≥": ">=", "≤": "<=", ">": ">", "<": "<"}
_OP = (
    "(?:"
    + "|".join(re.escape(s) for s in sorted(_SYMBOL_OPS, key=len, reverse=True))
    + r"|(?<![<>=!])=(?!=)|"
    + "|".join(rf"\b{w}\b" for w in sorted(_WORD_OPS, key=len, reverse=True))
    + ")"
)
_NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"
_COMPARISON = re.compile(
    rf"^(?P<subject>.+?)\s*(?P<op>{_OP})\s*(?P<num>{_NUMBER})\s*(?P<unit>%|[A-Za-z]+\b)?"
    rf"(?P<plus>\+)?(?P<rest>.*)$",
    re.IGNORECASE,
)
_PERCENT_FIRST = re.compile(rf"^(?P<num>{_NUMBER})\s*%\s*(?P<plus>\+)?\s+(?P<subject>.+)$")
_OP_FIRST = re.compile(
    rf"^(?P<op>{_OP})\s*(?P<num>{_NUMBER})\s*(?P<unit>%|[A-Za-z]+\b)?(?P<plus>\+)?\s*(?P<subject>.*)$",
    re.IGNORECASE,
)
# ``Snapshot checksum mismatches: 0``: a count or measure stated as what it must be.
_COLON = re.compile(
    rf"^(?P<subject>[^:]{{2,80}}?)\s*:\s*(?P<num>{_NUMBER})\s*(?P<unit>%|[A-Za-z]+)?\s*$"
)
_ZERO = re.compile(
    r"^(?:zero|no|0)\s+(?!(?:more|less|fewer|greater)\b)(?P<subject>.+)$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Translation:
    """A criterion in words and what became of it: ``expr`` (None: not translated) and
    ``note``, the words left out (when translated) or the reason (when not)."""

    text: str
    expr: str | None
    note: str


def metric_namespace(title: str) -> str:
    """The metric prefix of a stream titled ``title`` (see the module docstring)."""
    words = ascii_words(title)
    if not words:
        return "plan"
    head = _ABBREVIATIONS.get(words[0], words[0])
    return head if head[0].isalpha() else f"m{head}"


def _metric(subject: str, namespace: str, title_word: str, suffix: str) -> str:
    words: list[str] = []
    for word in ascii_words(subject):
        if words and word in _CONNECTORS:
            break
        if word not in _ARTICLES:
            words.append(word)
    while len(words) > 1 and words[0] in {namespace, title_word}:
        words.pop(0)
    if suffix in _TIME_UNITS and len(words) > 1 and words[-1] == "time":
        words.pop()
    if suffix and (not words or words[-1] != suffix):
        words.append(suffix)
    return "_".join(words)


def _number(text: str) -> str:
    return text.replace(",", "").lstrip("+")


def _checked(text: str, expr: str, note: str) -> Translation:
    try:
        parse_criterion(expr)
    except GateSyntaxError as error:
        return Translation(
            text, None, f"made {expr!r}, which the gate grammar rejects: {error.reason}"
        )
    return Translation(text, expr, note)


def translate(text: str, title: str) -> Translation:
    """Turn one criterion written in words into a gate expression for the stream titled
    ``title``; ``expr`` is None (and ``note`` says why) when it cannot be done safely."""
    written = " ".join(strip_emphasis(text).split()).rstrip(".")
    # Parentheses hold baselines and remarks ("(from 0-32%)"), never the criterion itself.
    plain = " ".join(re.sub(r"\([^)]*\)", " ", written).split())
    namespace = metric_namespace(title)
    title_words = ascii_words(title)
    title_word = title_words[0] if title_words else namespace
    if (match := _COLON.match(plain)) is not None:
        unit = (match.group("unit") or "").lower()
        if not unit or unit in _UNIT_SUFFIX:
            metric = _metric(
                match.group("subject"), namespace, title_word, _UNIT_SUFFIX.get(unit, "")
            )
            if metric:
                return _checked(
                    written, f"{namespace}.{metric} == {_number(match.group('num'))}", ""
                )
    if (match := _ZERO.match(plain)) is not None:
        metric = _metric(match.group("subject"), namespace, title_word, "")
        if metric:
            return _checked(written, f"{namespace}.{metric} == 0", "")
    if (match := _PERCENT_FIRST.match(plain)) is not None:
        number = float(_number(match.group("num")))
        metric = _metric(match.group("subject"), namespace, title_word, "pct")
        if match.group("plus") or number >= 100:
            return _checked(written, f"{namespace}.{metric} >= {_number(match.group('num'))}", "")
        if number == 0:
            return _checked(written, f"{namespace}.{metric} == 0", "")
        return Translation(
            written,
            None,
            "a bare percentage does not say whether it is a floor or a ceiling; "
            "write it with '>' or '<'",
        )
    for pattern in (_OP_FIRST, _COMPARISON):
        match = pattern.match(plain)
        if match is None:
            continue
        op_word = " ".join(match.group("op").lower().split())
        op = _SYMBOL_OPS.get(op_word) or _WORD_OPS.get(op_word) or "=="
        unit = (match.group("unit") or "").lower()
        suffix = _UNIT_SUFFIX.get(unit, "")
        subject = match.group("subject")
        rest = match.group("rest") if pattern is _COMPARISON else ""
        if unit and not suffix:  # a word after the number, not a unit
            if pattern is _COMPARISON:
                rest = f"{match.group('unit')}{rest}"
            else:
                subject = f"{match.group('unit')} {subject}"
        if match.group("plus") and op in {">", "=="}:
            op = ">="
        metric = _metric(subject, namespace, title_word, suffix)
        if metric and metric != suffix:
            left_out = " ".join(rest.split())
            note = f"left out: {left_out!r}" if left_out else ""
            bound = _number(match.group("num"))
            return _checked(written, f"{namespace}.{metric} {op} {bound}", note)
    return Translation(
        written,
        None,
        "no measurable comparison (metric, '>'/'<' and a number) in these words",
    )
