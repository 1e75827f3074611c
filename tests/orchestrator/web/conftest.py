"""A real daemon subprocess serving the dashboard on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.ports import free_port


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int, str]]:
    """The daemon, its HTTP port and the token it wrote to ``<state>/http-token``."""
    port = free_port()
    process = DaemonProcess(tmp_path, args=("--http", f"127.0.0.1:{port}")).start()
    try:
        yield process, port, (process.state / "http-token").read_text().strip()
    finally:
        process.close()
