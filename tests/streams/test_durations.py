"""Durations (``250ms``, ``1h30m``, seconds) and timelines (``15m..30m``) as plans write them."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from streams.durations import Duration, Timeline, format_duration, parse_duration


class _Holder(BaseModel):
    timeout: Duration


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        (0, 0.0),
        (5, 5.0),
        (2.5, 2.5),
        ("7", 7.0),
        ("0.25", 0.25),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s500ms", 90.5),
        (" 2m ", 120.0),
        ("1h 30m", 5400.0),
    ],
)
def test_valid_durations(written: object, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)
    assert _Holder(timeout=written).timeout == pytest.approx(seconds)


@pytest.mark.parametrize(
    "written",
    [
        "",
        "soon",
        "5 minutes",
        "2x",
        "m",
        "1.5.3s",
        "-5",
        "1e3",
        "30s-",
        "ms30",
        "1,5s",
        True,
        None,
        [1],
        {"s": 1},
        float("nan"),
        float("inf"),
        "9" * 400,
    ],
)
def test_invalid_durations_name_the_accepted_forms(written: object) -> None:
    with pytest.raises(ValueError, match=r"not a duration: .*250ms, 30s, 2m, 1h30m"):
        parse_duration(written)


@pytest.mark.parametrize("written", [-1, -0.5])
def test_negative_durations(written: float) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(written)


def test_a_bad_duration_in_a_model_says_what_to_write() -> None:
    with pytest.raises(ValidationError) as info:
        _Holder(timeout="10 minutes")
    (error,) = info.value.errors()
    assert error["loc"] == ("timeout",)
    assert "not a duration: '10 minutes'" in error["msg"]
    assert "1h30m" in error["msg"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.2s"),
        (1.5, "1.5s"),
        (42, "42s"),
        (125, "2m05s"),
        (3720, "1h02m"),
        (90000, "25h00m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("written", "expected_s", "limit_s"),
    [
        ("15m..30m", 900.0, 1800.0),
        ("1s..5s", 1.0, 5.0),
        ("30m", 1800.0, 1800.0),
        (45, 45.0, 45.0),
        ("10..20", 10.0, 20.0),
        ("1h..1h30m", 3600.0, 5400.0),
        ("0..5m", 0.0, 300.0),
        ({"expected": "15m", "limit": "30m"}, 900.0, 1800.0),
        ({"expected": "15m"}, 900.0, 900.0),
        ({"limit": "30m"}, 1800.0, 1800.0),
        ({"expected_s": 1.0, "limit_s": 2.0}, 1.0, 2.0),
    ],
)
def test_valid_timelines(written: object, expected_s: float, limit_s: float) -> None:
    timeline = Timeline.model_validate(written)
    assert (timeline.expected_s, timeline.limit_s) == (expected_s, limit_s)


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("30m..15m", "the hard limit is shorter than the expected time; write expected..limit"),
        ({"expected": "30m", "limit": "15m"}, "the hard limit is shorter"),
        ("0", "a timeline limit must be above zero"),
        ("0..0", "a timeline limit must be above zero"),
        ("soon", "not a duration: 'soon'"),
        ("15m..", "not a duration: ''"),
        ("..30m", "not a duration: ''"),
        ("15m..30m..1h", "not a duration: '30m..1h'"),
        ("-1m..2m", "not a duration: '-1m'"),
        ({"expected": "15m", "lim": "30m"}, "unknown timeline key 'lim'"),
        ({"start": 1, "end": 2}, "unknown timeline key 'end', 'start'"),
        (True, "not a timeline: True"),
        ([15, 30], "not a timeline: [15, 30]"),
    ],
)
def test_invalid_timelines(written: object, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Timeline.model_validate(written)
    assert says in str(info.value)


def test_a_timeline_renders_as_written() -> None:
    assert str(Timeline.model_validate("15m..30m")) == "15m00s..30m00s"
    assert str(Timeline.model_validate("1.5s..5s")) == "1.5s..5.0s"
