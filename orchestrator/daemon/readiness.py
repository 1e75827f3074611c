"""How a starting daemon makes itself known: a pid file beside its socket, and sd_notify.

- ``<socket>.pid`` holds the daemon's pid from the moment it owns the socket path (before it
  opens the store, which can take seconds) until it exits. Clients that find no socket yet,
  or a refused connection, wait (``connect_wait_s``) while that pid is alive.
- With ``NOTIFY_SOCKET`` set (systemd ``Type=notify``), the daemon sends ``READY=1`` once it
  serves the socket and resumed its runs, and ``STOPPING=1`` when it starts shutting down.
  A path starting with ``@`` names an abstract socket. Failures to notify are logged, never
  raised: a daemon does not die because its supervisor went away.
"""

from __future__ import annotations

import os
import socket
from contextlib import suppress
from pathlib import Path

import structlog

__all__ = ["pid_alive", "pid_file_of", "read_pid", "remove_pid_file", "sd_notify", "write_pid_file"]

_log = structlog.get_logger("orchestrator.daemon")

#: Longest wait to hand one state to the supervisor's socket.
_NOTIFY_TIMEOUT_S = 1.0


def pid_file_of(socket_path: Path) -> Path:
    """The pid file of the daemon serving ``socket_path``."""
    return socket_path.with_name(socket_path.name + ".pid")


def write_pid_file(socket_path: Path) -> Path | None:
    """Record this process as the daemon of ``socket_path`` (atomically replaced). Only a
    hint for clients: a failure (a full disk) is logged and the daemon goes on without it."""
    path = pid_file_of(socket_path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        _log.warning("pid_file_not_written", path=str(path), error=exc.strerror or str(exc))
        return None
    return path


def remove_pid_file(socket_path: Path) -> None:
    """Remove the pid file if it is still this process's."""
    path = pid_file_of(socket_path)
    if read_pid(path) == os.getpid():
        path.unlink(missing_ok=True)


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or None if it is absent or not a pid."""
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``$NOTIFY_SOCKET``; False if unset or it failed."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = b"\0" + os.fsencode(target[1:]) if target.startswith("@") else os.fsencode(target)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(_NOTIFY_TIMEOUT_S)
            sock.sendto(state.encode(), address)
    except OSError as exc:
        _log.warning("sd_notify_failed", state=state, socket=target, error=exc.strerror or str(exc))
        return False
    return True
