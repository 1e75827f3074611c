"""Step processes never outlive their daemon, nor a lease their step lost.

Every step process (``command`` and external agents) is started through
:func:`open_step_process`: in its own session, with ``ORCH_STEP_TOKEN`` in its environment
(inherited by everything it starts, ``setsid`` grandchildren included), and registered with
the process's one :mod:`watchdog <agents.processes.watchdog>` before a cancellation is honoured
(the spawn is shielded, so a cancel landing while the process starts cannot orphan it).
:func:`end_step_process` ends the whole tree (group and token) when the action is done.

The watchdog is a separate, tiny process reading a pipe from this one. When this process
dies (SIGKILL included) the pipe reaches EOF and the watchdog ends every step tree at once.
While a step runs under a Redis lease, the lease table tells the watchdog the step's kill
time, :data:`LEASE_KILL_MARGIN` of the lease before the lease can end, and each renewal
extends it; a frozen daemon renews nothing, so the watchdog ends the step before anyone else
can be granted its locks. :func:`lease_lapsed` tells the step runner so afterwards.

Each process that spawns steps records its token prefix and its groups in a small file under
``<state_dir>/watchdog/`` (see :func:`open_containment`); a new daemon reaps what a predecessor
whose watchdog was killed too left running. Without ``/proc`` (not Linux) tokens cannot be
swept and only process groups are ended; without a watchdog, only the daemon's own cleanup
runs. Both are logged once (``process_containment_degraded``). cgroup v2 is not used: this
kind of machine mounts cgroup v1, and the token sweep covers the same escapes.

One :class:`Containment` per process (like the lease renewer thread): the watchdog guards the
process, not one run, so it is a process-wide object rather than a setting passed down.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import anyio
import structlog
from anyio.abc import Process

from agents.processes import watchdog
from agents.processes.watchdog import TOKEN_VAR, kill_trees, marked_pids, proc_available, start_time

__all__ = [
    "LEASE_KILL_MARGIN",
    "TOKEN_VAR",
    "Containment",
    "StepProcess",
    "containment",
    "end_step_process",
    "lease_lapsed",
    "open_containment",
    "open_step_process",
    "reap_predecessors",
    "step_lease",
]

#: A leased step is killed this fraction of the lease before its lease can end, so it is
#: gone before Redis could grant its locks to anyone else.
LEASE_KILL_MARGIN = 0.25
#: A renewal must reach the watchdog this long before the current kill time to count.
_EXTEND_SLACK_S = 0.05
_CLOSE_WAIT_S = 5.0

_log = structlog.get_logger("agents.processes.containment")
_lease_key: ContextVar[str | None] = ContextVar("orch_step_lease", default=None)


@dataclass(frozen=True, slots=True)
class StepProcess:
    """A started step process and the token its whole tree carries."""

    process: Process
    token: str


@dataclass(slots=True)
class _Lease:
    kill_at: float
    lapsed: bool = False


class Containment:
    """This process's step trees, leases, watchdog and record files (see the module doc)."""

    def __init__(self) -> None:
        self.prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock = threading.Lock()
        self._count = 0
        self._trees: dict[str, tuple[int, str]] = {}
        self._leases: dict[str, _Lease] = {}
        self._dog: subprocess.Popen[bytes] | None = None
        self._dog_failed = False
        self._records: dict[Path, int] = {}
        self._degraded_logged = False
        self.proc_sweep = proc_available()

    # -- the watchdog ---------------------------------------------------------------------

    def _send(self, line: str) -> None:
        """Write one command to the watchdog (starting it if needed); caller holds the lock."""
        dog = self._ensure_dog()
        if dog is None or dog.stdin is None:
            return
        try:
            os.write(dog.stdin.fileno(), (line + "\n").encode())
        except BlockingIOError:
            # A stopped watchdog with a full pipe must not stall the daemon. A lost
            # extension errs on the safe side: the step is ended when the watchdog resumes.
            _log.warning("watchdog_stalled", pid=dog.pid, dropped=line.split()[0])
        except OSError:
            # Killed under us: a new one takes over everything still running.
            self._discard_dog()
            if self._ensure_dog() is not None:  # it was told everything still running
                self._send(line)

    def _discard_dog(self) -> None:
        """Forget a watchdog that died under us (killed); the next one takes over."""
        dog, self._dog = self._dog, None
        if dog is not None:
            _log.warning("watchdog_lost", pid=dog.pid, prefix=self.prefix)
            for stream in (dog.stdin, dog.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            dog.poll()

    def _ensure_dog(self) -> subprocess.Popen[bytes] | None:
        if self._dog is not None and self._dog.poll() is None:
            return self._dog
        self._discard_dog()
        if self._dog_failed:
            return None
        argv = [sys.executable, "-I", "-S", watchdog.__file__, self.prefix]
        try:
            self._dog = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            self._dog_failed = True
            self._degraded("watchdog could not start", error=str(exc))
            return None
        assert self._dog.stdout is not None and self._dog.stdin is not None
        os.set_blocking(self._dog.stdout.fileno(), False)
        os.set_blocking(self._dog.stdin.fileno(), False)
        _log.info("watchdog_started", pid=self._dog.pid, prefix=self.prefix)
        self._replay()
        if not self.proc_sweep:
            self._degraded("no /proc: setsid descendants of a step cannot be found")
        return self._dog

    def _replay(self) -> None:
        dog = self._dog
        if dog is None or dog.stdin is None:
            return
        lines = [f"record {path}" for path in self._records]
        lines += [f"add {t} {pgid} {_wire(key)}" for t, (pgid, key) in self._trees.items()]
        lines += [f"lease {_wire(k)} {lease.kill_at!r}" for k, lease in self._leases.items()]
        for line in lines:  # one line per write: a pipe write under PIPE_BUF is atomic
            with contextlib.suppress(OSError):
                os.write(dog.stdin.fileno(), f"{line}\n".encode())

    def _read_reports(self) -> None:
        """Take the watchdog's ``lapsed KEY`` reports without blocking; caller holds the lock."""
        dog = self._dog
        if dog is None or dog.stdout is None:
            return
        with contextlib.suppress(OSError):
            data = os.read(dog.stdout.fileno(), 65536)
            for line in data.decode("ascii", "replace").splitlines():
                verb, _, wired = line.partition(" ")
                key = _unwire(wired)
                if verb == "lapsed" and key in self._leases:
                    self._leases[key].lapsed = True

    def _degraded(self, reason: str, **fields: object) -> None:
        if not self._degraded_logged:
            self._degraded_logged = True
            _log.warning("process_containment_degraded", reason=reason, **fields)

    def close(self) -> None:
        """End the watchdog (it ends whatever is still registered, then exits)."""
        with self._lock:
            dog, self._dog = self._dog, None
        if dog is not None:
            _close(dog)

    # -- step trees ----------------------------------------------------------------------

    def new_token(self) -> str:
        with self._lock:
            self._count += 1
            return f"{self.prefix}.{self._count}"

    def started(self, token: str, pgid: int, key: str | None) -> None:
        """A step process is running: record its group and tell the watchdog."""
        key = key or "-"
        with self._lock:
            self._trees[token] = (pgid, key)
            when = start_time(pgid)
            for path in self._records:
                with contextlib.suppress(OSError), path.open("a") as f:
                    f.write(f"group {pgid} {when}\n")
            lease = self._leases.get(key)
            if lease is not None:
                self._send(f"lease {_wire(key)} {lease.kill_at!r}")
            self._send(f"add {token} {pgid} {_wire(key)}")

    def end(self, token: str) -> None:
        """Kill the tree of ``token`` (its group and every process with its token). Blocks
        for a ``/proc`` sweep, so async callers run it in a worker thread."""
        with self._lock:
            if token not in self._trees:
                return  # ended already: nothing of its tree was left to start anything
            pgid, _ = self._trees[token]
        kill_trees([token] if self.proc_sweep else [], [pgid])
        with self._lock:
            if self._trees.pop(token, None) is not None:
                self._send(f"forget {token}")
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        """Let the watchdog go when nothing needs it (no trees, no daemon recording)."""
        with self._lock:
            if self._trees or self._records or self._dog is None:
                return
            dog, self._dog = self._dog, None
        _close(dog)

    # -- leases (called by the Redis lease table, from the loop or the renewer thread) ----

    def lease_granted(self, key: str, deadline: float, lease_s: float) -> None:
        with self._lock:
            self._leases[key] = _Lease(kill_at=deadline - lease_s * LEASE_KILL_MARGIN)

    def lease_renewed(self, key: str, deadline: float, lease_s: float) -> bool:
        """Extend ``key``'s kill time. False if the lease lapsed meanwhile, or if the renewal
        came too late to reach the watchdog before it would end the key's step processes
        (they are ended now): the holder must count the lease as lost."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is None:
                return True
            guarded = any(k == key for _, k in self._trees.values())
            late = time.monotonic() >= lease.kill_at - _EXTEND_SLACK_S
            if lease.lapsed or (late and guarded):
                lease.lapsed = True
                if guarded:
                    self._send(f"lost {_wire(key)}")
                return False
            lease.kill_at = deadline - lease_s * LEASE_KILL_MARGIN
            if guarded:
                self._send(f"lease {_wire(key)} {lease.kill_at!r}")
            return True

    def lease_lost(self, key: str) -> None:
        with self._lock:
            lease = self._leases.get(key)
            if lease is not None:
                lease.lapsed = True
            if any(k == key for _, k in self._trees.values()):
                self._send(f"lost {_wire(key)}")

    def lease_released(self, key: str) -> None:
        with self._lock:
            if self._leases.pop(key, None) is not None and self._dog is not None:
                self._send(f"drop {_wire(key)}")

    def lapsed(self, key: str) -> bool:
        """Whether ``key``'s lease went past its kill time (its step trees were ended)."""
        with self._lock:
            self._read_reports()
            lease = self._leases.get(key)
            if lease is None:
                return False
            if not lease.lapsed and time.monotonic() >= lease.kill_at:
                lease.lapsed = True
            return lease.lapsed

    # -- records for a successor ---------------------------------------------------------

    def add_record(self, directory: Path) -> None:
        with self._lock:
            path = directory / f"{self.prefix}.procs"
            if path in self._records:
                self._records[path] += 1
                return
            directory.mkdir(parents=True, exist_ok=True)
            with path.open("w") as f:
                f.write(f"owner {os.getpid()} {start_time(os.getpid())}\nprefix {self.prefix}\n")
                for pgid, _ in self._trees.values():
                    f.write(f"group {pgid} {start_time(pgid)}\n")
            self._records[path] = 1
            if self._dog is not None:
                self._send(f"record {path}")

    def remove_record(self, directory: Path) -> None:
        with self._lock:
            path = directory / f"{self.prefix}.procs"
            count = self._records.get(path, 0) - 1
            if count > 0:
                self._records[path] = count
                return
            self._records.pop(path, None)
            if self._dog is not None:
                self._send(f"unrecord {path}")
        with contextlib.suppress(OSError):
            path.unlink()
        self._close_if_idle()


def _wire(key: str) -> str:
    """A lease key as one word of the watchdog's line protocol (``-``: no lease)."""
    return key if key == "-" else key.encode().hex()


def _unwire(word: str) -> str:
    try:
        return bytes.fromhex(word).decode()
    except ValueError:
        return ""


def _close(dog: subprocess.Popen[bytes]) -> None:
    """Close the watchdog's pipes (EOF: it ends what it knows and exits) and reap it."""
    for stream in (dog.stdin, dog.stdout):
        if stream is not None:
            stream.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        dog.wait(_CLOSE_WAIT_S)


_containment = Containment()


def containment() -> Containment:
    """This process's :class:`Containment`."""
    return _containment


def reap_predecessors(directory: Path) -> int:
    """End what dead daemons recorded under ``directory`` left running; returns how many
    processes were killed. A record whose owner is alive (same pid and start time) stays."""
    killed = 0
    with contextlib.suppress(FileNotFoundError):
        for path in sorted(directory.glob("*.procs")):
            killed += _reap(path)
    return killed


def _reap(path: Path) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    owner: tuple[int, str] | None = None
    prefix = None
    groups: list[int] = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "owner" and parts[1].isdigit():
            owner = (int(parts[1]), parts[2])
        elif len(parts) == 2 and parts[0] == "prefix" and "." not in parts[1]:
            prefix = parts[1]
        elif (
            len(parts) == 3
            and parts[0] == "group"
            and parts[1].isdigit()
            # Only a group whose leader is still the process recorded (not a recycled pid).
            and str(start_time(int(parts[1]))) == parts[2]
        ):
            groups.append(int(parts[1]))
    if owner is None or prefix is None:
        return 0
    if str(start_time(owner[0])) == owner[1]:
        return 0  # its daemon (maybe this process) is alive and its watchdog guards it
    markers = [f"{prefix}."] if proc_available() else []
    before = len(marked_pids(markers)) if markers else 0
    kill_trees(markers, groups)
    with contextlib.suppress(OSError):
        path.unlink()
    _log.warning(
        "predecessor_reaped",
        record=str(path),
        daemon_pid=owner[0],
        groups=len(groups),
        processes=before,
    )
    return before + len(groups)


@contextlib.asynccontextmanager
async def open_containment(state_dir: Path) -> AsyncIterator[None]:
    """For a daemon or ``orchestrator run`` using ``state_dir``: reap what dead predecessors
    left, then record this process's step groups there until the block ends."""
    directory = state_dir / "watchdog"
    await anyio.to_thread.run_sync(reap_predecessors, directory)
    _containment.add_record(directory)
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_containment.remove_record, directory)


@contextlib.contextmanager
def step_lease(key: str | None) -> Iterator[None]:
    """Step processes started inside are ended when lease ``key`` lapses (None: no lease)."""
    reset = _lease_key.set(key)
    try:
        yield
    finally:
        _lease_key.reset(reset)


def lease_lapsed(key: str) -> bool:
    """Whether the lease ``key`` went unrenewed past its kill time (see the module doc)."""
    return _containment.lapsed(key)


async def open_step_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdin: int | None = None,
) -> StepProcess:
    """Start a step process in its own session with a fresh token, registered with the
    watchdog before any cancellation is honoured. Raises OSError if it cannot start."""
    token = _containment.new_token()
    with anyio.CancelScope(shield=True):
        process = await anyio.open_process(
            list(argv),
            env={**env, TOKEN_VAR: token},
            cwd=cwd,
            stdin=stdin,
            start_new_session=True,
        )
        _containment.started(token, process.pid, _lease_key.get())
    return StepProcess(process, token)


async def end_step_process(step: StepProcess) -> None:
    """Kill whatever is left of the step's tree (group and token holders). Never raises."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(_containment.end, step.token)
