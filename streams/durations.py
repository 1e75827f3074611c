"""Durations as plan files write them: ``250ms``, ``30s``, ``2m``, ``1h30m``, or seconds.

Pydantic types :data:`Duration` (seconds as a float) and :class:`Timeline` (``15m..30m``:
expected..hard limit) parse them at the boundary; inside, everything is seconds (``_s``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema, model_validator

__all__ = ["Duration", "Timeline", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_HINT = "write a number of seconds or a duration like 250ms, 30s, 2m, 1h30m"


def parse_duration(value: Any) -> float:
    """Return ``value`` in seconds; raise ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}; {_HINT}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float's range: 10**400
            raise ValueError(f"a duration cannot be this long: {value!r}") from None
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif _WHOLE.fullmatch(text):
            seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        else:
            raise ValueError(f"not a duration: {value!r}; {_HINT}")
    else:
        raise ValueError(f"not a duration: {value!r}; {_HINT}")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    if not math.isfinite(seconds):  # .nan / .inf in YAML, NaN / Infinity in JSON
        raise ValueError(f"not a duration: {value!r}; {_HINT}")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly for humans: ``1.5s``, ``2m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


_DURATION_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d)?)+\s*$"},
    ],
    "description": "Seconds, or a duration such as 250ms, 30s, 2m, 1h30m.",
}

Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]


class Timeline(BaseModel):
    """How long a stream should take (``expected_s``) and may take (``limit_s``).

    Written ``15m..30m``, a single ``30m`` (both the same), or a mapping
    ``{expected: 15m, limit: 30m}``. Past ``limit_s`` the rest of the stream is cancelled.
    """

    # Deferred: a plan's StreamSpec holds it, built into Plan's validator; its own validator
    # is built when it is first used alone (see streams.model._Model).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    expected_s: float
    limit_s: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value)
            low, sep, high = text.partition("..")
            expected = parse_duration(low)
            limit = parse_duration(high) if sep else expected
            value = {"expected_s": expected, "limit_s": limit}
        elif isinstance(value, dict) and set(value) <= {"expected", "limit"}:
            expected = parse_duration(value.get("expected", value.get("limit")))
            limit = parse_duration(value.get("limit", expected))
            value = {"expected_s": expected, "limit_s": limit}
        elif isinstance(value, dict) and not set(value) <= {"expected_s", "limit_s"}:
            unknown = ", ".join(sorted(repr(k) for k in set(value) - {"expected", "limit"}))
            raise ValueError(
                f"unknown timeline key {unknown}; write {{expected: 15m, "
                "limit: 30m}, expected..limit such as 15m..30m, or one duration"
            )
        elif not isinstance(value, dict | cls):
            raise ValueError(
                f"not a timeline: {value!r}; write expected..limit such as "
                "15m..30m, or one duration"
            )
        if (
            isinstance(value, dict)
            and isinstance(value.get("limit_s"), int | float)
            and isinstance(value.get("expected_s"), int | float)
        ):  # else pydantic reports the wrong types
            if value["limit_s"] < value["expected_s"]:
                raise ValueError(
                    "the hard limit is shorter than the expected time; write expected..limit"
                )
            if value["limit_s"] <= 0:
                raise ValueError("a timeline limit must be above zero")
        return value

    def __str__(self) -> str:
        return f"{format_duration(self.expected_s)}..{format_duration(self.limit_s)}"
