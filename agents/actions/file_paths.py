"""Paths that an agent's file actions may touch, and the system calls that keep them there.

An agent names a file by a path relative to the run's working directory (its *root*). A path
is refused when it is empty, absolute, holds a ``..`` component, a NUL, or names the root
itself (:func:`relative_path`, lexical, so a call's lock can be named before anything runs).

Symlinks are refused on the way, not resolved: every directory on the way is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the one before (``openat``), starting from the root,
and the file itself with ``O_NOFOLLOW``. A symlink that would lead out of the root (or to
another name inside it, which would dodge that name's lock) therefore cannot be followed,
and no component can be swapped for a symlink between the check and the use. A root the plan
declares (``strict``) is itself walked that way from ``/``. Writes go to a
temporary file in the same directory, are fsynced and renamed over the name (atomic).
"""

from __future__ import annotations

import errno
import os
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["PathRefused", "read_file", "relative_path", "remove_file", "write_file"]

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW


class PathRefused(ValueError):
    """A path an agent may not use; ``reason`` says why in words the model can act on.

    A ValueError so that a parameters model can raise it from a validator; the file actions
    turn it into a ``refused`` result, never a traceback."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path!r}: {reason}")


def relative_path(raw: str) -> str:
    """The normalised relative form of ``raw`` (``./a//b`` -> ``a/b``), or PathRefused."""
    if not raw or "\x00" in raw:
        raise PathRefused(raw, "give a non-empty path without NUL characters")
    if raw.startswith(("/", "\\")) or Path(raw).is_absolute():
        raise PathRefused(
            raw, "absolute paths are refused: give it relative to the working directory"
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PathRefused(raw, "'..' is refused: paths stay inside the working directory")
    if not parts:
        raise PathRefused(raw, "names the working directory itself, not a file")
    return posixpath.join(*parts)


def _walk(
    fd: int, parts: Sequence[str], refuse: Callable[[str], PathRefused], *, create: bool
) -> int:
    """The fd of directory ``parts`` below directory ``fd``, each opened from the one before
    without following a symlink. ``fd`` is taken over: closed once the next one is open,
    and on failure. A part that is a symlink or no folder raises ``refuse(part)``; a missing
    one is made when ``create``, else FileNotFoundError."""
    try:
        for part in parts:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise refuse(part) from None
                raise
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_root(root: Path, strict: bool) -> int:
    """A directory fd of ``root``; ``strict`` (a root the plan declares, checked to hold no
    symlink when the run started) walks it from ``/`` without following any symlink, so a
    component swapped for a link since cannot move it."""
    if not strict:
        return os.open(root, _ROOT_FLAGS)

    def refuse(part: str) -> PathRefused:
        return PathRefused(str(root), f"the declared root's {part!r} is now a symlink or no folder")

    return _walk(os.open("/", _ROOT_FLAGS), root.parts[1:], refuse, create=False)


@contextmanager
def _parent_dir(root: Path, rel: str, *, create: bool, strict: bool) -> Iterator[int]:
    """A directory fd of ``rel``'s parent, reached without following any symlink."""

    def refuse(part: str) -> PathRefused:
        return PathRefused(rel, f"{part!r} is a symlink or not a directory")

    fd = _walk(_open_root(root, strict), rel.split("/")[:-1], refuse, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def read_file(root: Path, rel: str, limit: int, *, strict: bool = False) -> bytes | None:
    """The bytes of ``root/rel`` (at most ``limit + 1``), or None when it does not exist.

    Raises PathRefused for a symlink or a non-regular file on the way."""
    try:
        with _parent_dir(root, rel, create=False, strict=strict) as parent:
            name = rel.rsplit("/", 1)[-1]
            try:
                # O_NONBLOCK: a FIFO planted under the name must not hang the call.
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                fd = os.open(name, flags, dir_fd=parent)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise PathRefused(rel, "is a symlink: symlinks are not followed") from None
                if exc.errno == errno.ENOENT:
                    return None
                raise
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise PathRefused(rel, "is not a regular file")
                with os.fdopen(fd, "rb", closefd=False) as handle:
                    return handle.read(limit + 1)
            finally:
                os.close(fd)
    except FileNotFoundError:
        return None


def write_file(root: Path, rel: str, data: bytes, *, strict: bool = False) -> None:
    """Replace (or create) ``root/rel`` with ``data`` atomically: a temporary file in the same
    directory, fsync, rename over the name, fsync the directory. Missing directories on the
    way are created; an existing file keeps its mode."""
    name = rel.rsplit("/", 1)[-1]
    with _parent_dir(root, rel, create=True, strict=strict) as parent:
        try:
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=parent,
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
            raise
        os.fsync(parent)


def remove_file(root: Path, rel: str, *, strict: bool = False) -> bool:
    """Remove ``root/rel`` (never a symlink's target); False when it was not there."""
    name = rel.rsplit("/", 1)[-1]
    try:
        with _parent_dir(root, rel, create=False, strict=strict) as parent:
            os.unlink(name, dir_fd=parent)
            os.fsync(parent)
    except FileNotFoundError:
        return False
    return True
