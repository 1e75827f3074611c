"""The session-end check that no test left a process running (a pytest plugin).

At the start of the session the pytest process becomes a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``): a process whose parent dies (a step's process group whose
daemon was SIGKILLed, a ``setsid`` grandchild) is re-parented to pytest instead of to init,
so it stays visible as a descendant. When the session ends, after the session fixtures have
stopped the servers they own (Redis, PostgreSQL, dockerd), every process still descending
from pytest was left behind by a test: each is listed with its command line, then killed,
and the session fails. Exited orphans (zombies) are reaped and do not count; a process that
is still ending gets a few seconds to go.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

_PR_SET_CHILD_SUBREAPER = 36
_ENDED = frozenset({"Z", "X", "gone"})


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    todo, seen = _children(pid), []
    while todo:
        child = todo.pop()
        if child not in seen:
            seen.append(child)
            todo += _children(child)
    return seen


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200] or "?"


def _reap_orphans() -> None:
    """Reap exited processes re-parented to us; our own Popen children are left alone
    (their exit status belongs to them): only zombies not started by this process."""
    for pid in _children(os.getpid()):
        if _state(pid) == "Z":
            with suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def left_running(settle_s: float = 5.0) -> list[tuple[int, str]]:
    """Processes descending from this one that are still running ``settle_s`` from now at
    the latest (one that is ending as its test finishes gets that long to go)."""
    deadline = time.monotonic() + settle_s
    while True:
        _reap_orphans()
        alive = [pid for pid in _descendants(os.getpid()) if _state(pid) not in _ENDED]
        if not alive or time.monotonic() >= deadline:
            return [(pid, _cmdline(pid)) for pid in alive]
        time.sleep(0.1)


def pytest_configure(config: pytest.Config) -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if sys.platform != "linux" or hasattr(session.config, "workerinput"):
        return
    leaked = left_running()
    if not leaked:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(leaked)} process(es) left running by the tests:"]
    lines += [f"  pid {pid}: {cmd}" for pid, cmd in leaked]
    text = "\n".join(lines)
    if reporter is not None:
        reporter.write_sep("=", "processes left behind", red=True)
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)
    for pid, _ in leaked:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
