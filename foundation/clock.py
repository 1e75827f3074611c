"""Time as the project writes it: UTC ISO-8601 timestamps with microseconds."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

__all__ = ["utc_timestamp"]


def utc_timestamp(now: float | None = None) -> str:
    """Now (or epoch seconds ``now``) as ``2026-11-21T16:15:00.123456Z``."""
    if now is None:
        now = time.time()
    second = int(now)
    micros = int((now - second) * 1_000_000)
    return f"{_second_prefix(second)}.{micros:06d}Z"


@functools.lru_cache(maxsize=4)
def _second_prefix(second: int) -> str:
    # strftime dominates event cost at thousands of events a second; once per second will do.
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
