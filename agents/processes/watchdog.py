"""The step watchdog: a tiny process beside a daemon that ends step process trees for it.

Pure standard library and started as ``python -I -S watchdog.py PREFIX`` by
:mod:`agents.processes.containment`, so it starts in milliseconds and imports nothing of ours. It
is in its own session (a signal to the daemon's process group does not reach it) and reads
commands from the daemon on stdin, one per line:

``add TOKEN PGID KEY``
    a step process (leader of group ``PGID``) whose environment carries
    ``ORCH_STEP_TOKEN=TOKEN``; ``KEY`` is the lease it runs under, or ``-``.
``forget TOKEN``
    the daemon ended that tree itself.
``lease KEY KILL_AT``
    end every tree under ``KEY`` at ``KILL_AT`` (``time.monotonic()``, which is the machine's
    ``CLOCK_MONOTONIC`` and so the same in both processes) unless a later ``lease`` line
    extends it. Lines are read before deadlines are judged, so an extension the daemon wrote
    in time is honoured however late the watchdog is scheduled.
``lost KEY``
    end every tree under ``KEY`` now. ``drop KEY``: the lease was released; forget it.

Before ending the trees of a lapsed lease it writes ``lapsed KEY`` to stdout. At EOF on stdin
(the daemon exited, however it died) it ends every tree it knows and every process whose
environment carries a token of ``PREFIX``, removes the daemon's record files (``record PATH``
lines) and exits.

Ending a tree: SIGKILL its process group, then SIGKILL every process whose environment holds
the step's token (``setsid`` descendants left the group but kept the environment), repeated
until a sweep of ``/proc`` finds none. Each process is signalled through a pidfd opened
before its environment is read, so a recycled pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterable

__all__ = ["TOKEN_VAR", "kill_trees", "marked_pids", "proc_available", "start_time"]

#: The environment variable naming a step process's token (inherited by all it starts).
TOKEN_VAR = "ORCH_STEP_TOKEN"
_TOKEN_ENTRY = TOKEN_VAR.encode() + b"="
_SWEEPS = 200  # a fork bomb outruns nothing: each sweep kills what the last one missed
_PROC = "/proc"


def proc_available() -> bool:
    """Whether process environments can be read here (Linux ``/proc``)."""
    return os.path.isfile(f"{_PROC}/self/environ")


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def _matches(environ: bytes, markers: tuple[bytes, ...]) -> bool:
    for entry in environ.split(b"\0"):
        if entry.startswith(_TOKEN_ENTRY):
            value = entry[len(_TOKEN_ENTRY) :]
            # A marker ending in "." is a daemon's prefix; any other is one exact token.
            return any(value == m or (m.endswith(b".") and value.startswith(m)) for m in markers)
    return False


def marked_pids(markers: Iterable[str], *, kill: bool = False) -> list[int]:
    """Pids of live processes whose environment has a token in ``markers`` (a marker ending
    in ``.`` matches every token with that prefix), SIGKILLed when ``kill``."""
    wanted = tuple(m.encode() for m in markers)
    found: list[int] = []
    own = os.getpid()
    try:
        names = os.listdir(_PROC)
    except OSError:
        return found
    for name in names:
        if not name.isdigit() or int(name) == own:
            continue
        pid = int(name)
        pidfd = -1
        with contextlib.suppress(OSError):
            pidfd = os.pidfd_open(pid)
        try:
            with open(f"{_PROC}/{name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone, or not ours to read
            environ = b""
        try:
            if _TOKEN_ENTRY in environ and _matches(environ, wanted):
                found.append(pid)
                if kill:
                    with contextlib.suppress(OSError):
                        if pidfd >= 0:
                            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                        else:
                            os.kill(pid, signal.SIGKILL)
        finally:
            if pidfd >= 0:
                os.close(pidfd)
    return found


def kill_trees(markers: Iterable[str], pgids: Iterable[int]) -> int:
    """SIGKILL the process groups ``pgids`` and every process carrying one of ``markers``;
    sweep until none is left. Returns how many marked processes were killed."""
    for pgid in pgids:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    markers = tuple(markers)
    if not markers:
        return 0
    killed = 0
    for _ in range(_SWEEPS):
        found = marked_pids(markers, kill=True)
        if not found:
            break
        killed += len(found)
        time.sleep(0.001)  # let the killed ones become zombies before the next sweep
    return killed


class _Watchdog:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.trees: dict[str, tuple[int, str]] = {}  # token -> (pgid, lease key)
        self.deadlines: dict[str, float] = {}
        self.lapsed: set[str] = set()
        self.records: set[str] = set()

    def command(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        verb, args = parts[0], parts[1:]
        if verb == "add" and len(args) == 3:
            token, pgid, key = args[0], int(args[1]), args[2]
            self.trees[token] = (pgid, key)
            if key in self.lapsed:
                self.end_key(key, report=False)
        elif verb == "forget" and len(args) == 1:
            self.trees.pop(args[0], None)
        elif verb == "lease" and len(args) == 2:
            if args[0] not in self.lapsed:
                self.deadlines[args[0]] = float(args[1])
        elif verb == "lost" and len(args) == 1:
            self.end_key(args[0], report=True)
        elif verb == "drop" and len(args) == 1:
            self.deadlines.pop(args[0], None)
            self.lapsed.discard(args[0])
        elif verb == "record" and len(args) == 1:
            self.records.add(args[0])
        elif verb == "unrecord" and len(args) == 1:
            self.records.discard(args[0])

    def end_key(self, key: str, *, report: bool) -> None:
        self.deadlines.pop(key, None)
        if report and key not in self.lapsed:
            with contextlib.suppress(OSError):
                os.write(sys.stdout.fileno(), f"lapsed {key}\n".encode())
        self.lapsed.add(key)
        doomed = [token for token, (_, k) in self.trees.items() if k == key]
        pgids = [self.trees.pop(token)[0] for token in doomed]
        kill_trees(doomed, pgids)

    def expire(self) -> float | None:
        """End the trees of every lapsed lease; the seconds until the next deadline."""
        now = time.monotonic()
        for key, at in list(self.deadlines.items()):
            if at <= now:
                self.end_key(key, report=True)
        if not self.deadlines:
            return None
        return max(0.0, min(self.deadlines.values()) - time.monotonic())

    def finish(self) -> None:
        pgids = [pgid for pgid, _ in self.trees.values()]
        kill_trees([*self.trees, f"{self.prefix}."], pgids)
        for path in self.records:
            with contextlib.suppress(OSError):
                os.unlink(path)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1] or "." in argv[1]:
        print("usage: watchdog.py PREFIX (read the module docstring)", file=sys.stderr)
        return 2
    dog = _Watchdog(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # ends the trees below too
    fd = sys.stdin.fileno()
    # Reports are best effort: a daemon that does not read them must not block the watchdog.
    os.set_blocking(sys.stdout.fileno(), False)
    pending = b""
    try:
        timeout = None
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            eof = False
            while ready:  # read everything written so far before judging deadlines
                chunk = os.read(fd, 65536)
                if not chunk:
                    eof = True
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    with contextlib.suppress(ValueError):
                        dog.command(line.decode("ascii", "replace"))
                ready, _, _ = select.select([fd], [], [], 0)
            if eof:
                break
            timeout = dog.expire()
    finally:
        dog.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
