"""Values as phase documents write them, read into plan values.

``95% (ML confidence ...)`` -> 0.95; ``Low (15%) - ...`` -> risk 0.15, level ``low``;
``15-30 minutes critical path`` -> ``15m..30m``; ``(2-minute recovery)`` -> ``2m``;
``CPU-Intensive Agents (Max 2 concurrent)`` -> class ``cpu``, cap 2. Each reader returns
None for text it cannot read, never a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streams.markdown._text import IDENTIFIER, ascii_words, list_item, slugify, strip_emphasis

__all__ = [
    "PRIORITIES",
    "Risk",
    "agent_names",
    "class_header",
    "duration",
    "evidence_id",
    "percent",
    "recovery_budget",
    "risk",
    "timeline",
]

PRIORITIES = ("critical", "high", "medium", "low")

_NUMBER = r"\d+(?:\.\d+)?"
_PERCENT = re.compile(rf"({_NUMBER})\s*%")
_UNITS = {
    "ms": "ms",
    "msec": "ms",
    "millisecond": "ms",
    "s": "s",
    "sec": "s",
    "second": "s",
    "m": "m",
    "min": "m",
    "minute": "m",
    "h": "h",
    "hr": "h",
    "hour": "h",
    "d": "d",
    "day": "d",
}
_UNIT = r"(ms|msecs?|milliseconds?|secs?|seconds?|s|mins?|minutes?|m|hrs?|hours?|h|days?|d)\b"
_RANGE = re.compile(
    rf"({_NUMBER})\s*(?:{_UNIT})?\s*(?:-|\u2013|\u2014|to|\.\.)\s*({_NUMBER})\s*{_UNIT}",
    re.IGNORECASE,
)
_SINGLE = re.compile(rf"({_NUMBER})\s*[- ]?\s*{_UNIT}", re.IGNORECASE)


def _unit(word: str) -> str:
    word = word.lower()
    return _UNITS.get(word, _UNITS.get(word.rstrip("s"), ""))


def _number(text: str) -> str:
    """``15`` stays ``15``; ``1.50`` becomes ``1.5`` (parse_duration reads both)."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def percent(text: str) -> float | None:
    """The first percentage in ``text`` as a fraction (``95%`` -> 0.95), or None when there
    is none or it lies outside 0-100%."""
    match = _PERCENT.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return round(value / 100, 6) if value <= 100 else None


@dataclass(frozen=True, slots=True)
class Risk:
    """``Low (15%) - quick rollback``: fraction 0.15 (None when no percentage), level
    ``low`` (empty when none) and the rationale after the figures."""

    fraction: float | None
    level: str
    rationale: str


_LEVEL = re.compile(r"^\s*([A-Za-z]+(?:[- ][A-Za-z]+)?)")
_LEVELS = {"low", "medium", "high", "critical", "moderate", "low-medium", "medium-high", "minimal"}


def risk(text: str) -> Risk:
    """Read a risk assessment: its percentage, its level word and the words after them."""
    text = strip_emphasis(text)
    match = _LEVEL.match(text)
    level = ""
    if match is not None:
        for candidate in (match.group(1), match.group(1).split()[0]):
            word = re.sub(r"[\s-]+", "-", candidate.lower())
            if word in _LEVELS:
                level = word
                break
    figure = _PERCENT.search(text)
    if figure is not None:
        rest = text[figure.end() :].lstrip(" )]")
    elif level:
        rest = text[len(level) :]
    else:
        rest = ""
    return Risk(percent(text), level, rest.strip(" -\u2013\u2014:,"))


def duration(text: str) -> str | None:
    """The first duration in ``text`` in plan form: ``2 minutes`` / ``2-minute`` -> ``2m``."""
    match = _SINGLE.search(text)
    if match is None or not _unit(match.group(2)):
        return None
    if float(match.group(1)) <= 0:
        return None
    return _number(match.group(1)) + _unit(match.group(2))


def timeline(text: str) -> tuple[str, str] | None:
    """``15-30 minutes critical path`` -> (``15m..30m``, ``critical path``); a single
    ``45 minutes`` -> ``45m``. None when no duration is there or the range runs backwards."""
    match = _RANGE.search(text)
    if match is not None:
        high_unit = _unit(match.group(4))
        low_unit = _unit(match.group(2)) if match.group(2) else high_unit
        low, high = float(match.group(1)), float(match.group(3))
        seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        if low * seconds[low_unit] > high * seconds[high_unit] or high <= 0:
            return None
        value = f"{_number(match.group(1))}{low_unit}..{_number(match.group(3))}{high_unit}"
    else:
        match = _SINGLE.search(text)
        if match is None or not _unit(match.group(2)) or float(match.group(1)) <= 0:
            return None
        value = _number(match.group(1)) + _unit(match.group(2))
    rest = (text[: match.start()] + " " + text[match.end() :]).strip(" -\u2013\u2014:,()")
    return value, " ".join(rest.split())


_RECOVERY = re.compile(
    rf"\(?\s*({_NUMBER})\s*[- ]?\s*{_UNIT}s?\s+(?:of\s+)?recovery(?:\s+time)?\s*\)?",
    re.IGNORECASE,
)


def recovery_budget(text: str) -> tuple[str, str] | None:
    """``Validate service connectivity (2-minute recovery)`` -> (``2m``, the sentence
    without it); None when the text names no recovery time."""
    match = _RECOVERY.search(text)
    if match is None or not _unit(match.group(2)) or float(match.group(1)) <= 0:
        return None
    rest = (text[: match.start()] + text[match.end() :]).strip()
    return _number(match.group(1)) + _unit(match.group(2)), " ".join(rest.split())


_CLASS_HEADER = re.compile(r"^\s*(.+?)\s*\bagents?\b\s*(?:[(\[](.*?)[)\]])?\s*:?\s*$", re.I)
# Words that name a class in the matrix's headers, in the order they are looked for:
# "Memory-Light" is light on memory, so "light" wins over "memory".
_CLASS_WORDS = (
    ("light", "light"),
    ("cpu", "cpu"),
    ("compute", "cpu"),
    ("io", "io"),
    ("disk", "io"),
    ("network", "network"),
    ("net", "network"),
    ("gpu", "gpu"),
    ("memory", "memory"),
)


def class_header(text: str) -> tuple[str, int | None, str] | None:
    """``CPU-Intensive Agents (Max 2 concurrent):`` -> (``cpu``, 2, ``Max 2 concurrent``);
    ``Memory-Light Agents (Unlimited):`` -> (``light``, None, ``Unlimited``). The cap is None
    for "unlimited" or when no number is given (the caller reports which); None when the
    line is not a class header."""
    match = _CLASS_HEADER.match(strip_emphasis(text))
    if match is None or list_item(text) is not None:
        return None
    words = ascii_words(match.group(1).replace("I/O", "io").replace("i/o", "io"))
    name = next((cls for word, cls in _CLASS_WORDS if word in words), "")
    if not name:
        name = slugify(" ".join(w for w in words if w not in {"intensive", "bound", "heavy"}))
    if not name or not IDENTIFIER.match(name):
        return None
    limit = match.group(2) or ""
    number = re.search(r"\d+", limit)
    cap = int(number.group()) if number and "unlimited" not in limit.lower() else None
    return name, (cap if cap and cap >= 1 else None), limit.strip()


_CONNECTORS = {
    "showing",
    "with",
    "for",
    "from",
    "of",
    "in",
    "on",
    "that",
    "to",
    "proving",
    "confirming",
    "via",
    "by",
}


def evidence_id(description: str) -> str:
    """An id from the first words of ``description``, up to a connector such as "showing"
    and at most four words: ``nvidia-smi output showing GPU utilization >50%`` ->
    ``nvidia-smi-output``."""
    kept: list[str] = []
    for token in strip_emphasis(description).split():
        word = token.strip(".,;:()[]'\"`").lower()
        if kept and word in _CONNECTORS:
            break
        slug = slugify(word)
        if slug:
            kept.append(slug)
        if len(kept) == 4:
            break
    return "-".join(kept) or "evidence"


def agent_names(text: str) -> list[tuple[str, bool]]:
    """``a, b and c (lead)`` -> [(a, False), (b, False), (c, True)]: the names written,
    slugged when they are not identifiers already, each with whether it was marked lead."""
    names: list[tuple[str, bool]] = []
    for part in re.split(r",|;|\s+and\s+|&", strip_emphasis(text)):
        lead = bool(re.search(r"[(\[]\s*lead\s*[)\]]", part, re.IGNORECASE))
        word = re.sub(r"[(\[].*?[)\]]", "", part).strip(" `.'\"")
        if not word:
            continue
        name = word if IDENTIFIER.match(word) else slugify(word)
        if name:
            names.append((name, lead))
    return names
