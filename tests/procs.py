"""Finding the processes a test started, by a nonce on their command lines, and the
``nonce`` fixture that kills whatever a failed test left behind (loaded as a plugin by
``tests/conftest.py``)."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["nonce", "survivors"]


def survivors(nonce: str) -> list[int]:
    """Live (non-zombie) processes whose command line carries ``nonce``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if nonce.encode() in cmdline and stat[stat.rfind(")") + 2] != "Z":
            found.append(int(name))
    return found


@pytest.fixture
def nonce() -> Iterator[str]:
    """A number to put on the command lines of a test's processes."""
    value = str(secrets.randbelow(900_000) + 100_000)
    yield value
    for pid in survivors(value):  # a failed test must not leave its processes behind
        os.kill(pid, signal.SIGKILL)
