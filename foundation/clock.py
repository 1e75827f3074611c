"""Time as the project writes it: UTC ISO-8601 timestamps with microseconds; and the event
loop's clock, read cheaply."""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import UTC, datetime

import anyio

__all__ = ["loop_time", "utc_timestamp", "utc_timestamp_parts"]


def utc_timestamp(now: float | None = None) -> str:
    """Now (or epoch seconds ``now``) as ``2026-11-21T16:15:00.123456Z``."""
    return utc_timestamp_parts(time.time() if now is None else now)[0]


def utc_timestamp_parts(now: float) -> tuple[str, int, int]:
    """Epoch seconds ``now`` as its :func:`utc_timestamp` text, whole second and microsecond
    (one reading of the clock gives all three)."""
    second = int(now)
    micros = int((now - second) * 1_000_000)
    return f"{_second_prefix(second)}.{micros:06d}Z", second, micros


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    # strftime dominates event cost at thousands of events a second; once per second will do.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def loop_time() -> float:
    """:func:`anyio.current_time`, without its backend look-up on asyncio (a sniffio call and
    a registry look-up each time, several µs; a step reads the clock about eight times).
    Under another backend (trio's virtual clock in tests and the schedule simulation) it is
    :func:`anyio.current_time` itself."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return loop.time()  # what anyio's asyncio backend returns
    return anyio.current_time()
