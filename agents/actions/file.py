"""``file.*``: an agent's own file actions, guarded against stale writes and path escapes.

- ``file.read``: the text of a file and its *version* (the sha256 of its bytes).
- ``file.write``: replace or create a file with the given text.
- ``file.edit``: replace exact strings in a file (``old_string`` -> ``new_string``, once
  unless ``replace_all``; or a list of ``edits`` applied in order, all or nothing).
- ``file.restore``: put back what a write or edit replaced (their UndoRecord), or remove the
  file that it created.

Paths are relative to the run's working directory and confined to it
(:mod:`agents.actions.file_paths`: no ``..``, no absolute paths, no symlinks followed), or,
with ``root: NAME``, to a folder the plan declares (``files: {roots: {NAME: dir}}``), with the
same confinement. Resource names (locks, the read ledger's versions) are ``file:<path>`` in
the working directory and ``file@NAME:<path>`` in a declared root: root names are
identifiers (no ``:``, ``@``), and no ``file:`` name starts with ``file@``, so they never
collide.

Stale writes: ``expected_version`` on a write or edit is the version the writer last read.
When the file exists and its version differs, or the writer says ``unread`` (it never read
it), or it says ``absent`` and the file exists, the call is refused with a ``stale`` result
(``details["status"] == "stale"``) and nothing is written. The tool gate
(:mod:`agents.tools.gate`) fills ``expected_version`` from the agent session's read ledger,
whatever the model passed; a plan step may leave it null (unguarded). Each call yields the
before/after sha256 as evidence (excerpt: a unified diff, secrets masked) and an UndoRecord.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.actions.file_paths import (
    PathRefused,
    read_file,
    relative_path,
    remove_file,
    write_file,
)
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.secrets import mask_text

__all__ = [
    "ABSENT",
    "UNREAD",
    "FileEditParams",
    "FileReadParams",
    "FileRestoreParams",
    "FileWriteParams",
    "file_resource",
    "file_resources",
    "register",
    "version_of",
]

#: Largest file these actions read or write.
MAX_BYTES = 4 * 1024 * 1024
_EXCERPT = 4096
#: ``expected_version`` of a writer that never read the file.
UNREAD = "unread"
#: ``expected_version`` of a writer that read the file as not existing.
ABSENT = "absent"

_PATH = Field(min_length=1, max_length=4096, description="Relative to the working directory.")
_EXPECTED = Field(
    default=None,
    description="The version (sha256) file.read returned; 'absent' to create only. "
    "Filled in by the daemon for agents.",
)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = _PATH
    root: str | None = Field(
        default=None,
        max_length=128,
        description="A folder the plan declares under files.roots (by its name) that path "
        "is relative to; default: the working directory.",
    )


class FileReadParams(_Params):
    """Parameters of ``file.read``."""


class FileWriteParams(_Params):
    """Parameters of ``file.write``: the whole new text of the file."""

    content: str = Field(max_length=MAX_BYTES)
    expected_version: str | None = _EXPECTED


class EditOp(BaseModel):
    """One replacement of ``file.edit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    old_string: str = Field(min_length=1)
    new_string: str
    replace_all: bool = False


class FileEditParams(_Params):
    """Parameters of ``file.edit``: one replacement, or ``edits`` applied in order."""

    old_string: str | None = Field(default=None, min_length=1)
    new_string: str | None = None
    replace_all: bool = False
    edits: list[EditOp] = Field(default_factory=list, max_length=100)
    expected_version: str | None = _EXPECTED

    @model_validator(mode="after")
    def _one_form(self) -> FileEditParams:
        single = self.old_string is not None or self.new_string is not None
        if single == bool(self.edits):
            raise ValueError("give old_string and new_string, or a list of edits (not both)")
        if single and (self.old_string is None or self.new_string is None):
            raise ValueError("give both old_string and new_string")
        return self

    def operations(self) -> list[EditOp]:
        if self.edits:
            return list(self.edits)
        assert self.old_string is not None and self.new_string is not None
        return [
            EditOp(
                old_string=self.old_string, new_string=self.new_string, replace_all=self.replace_all
            )
        ]


class FileRestoreParams(_Params):
    """Parameters of ``file.restore`` (as a write's or edit's UndoRecord gives them):
    ``content_b64`` null removes the file (it did not exist before)."""

    content_b64: str | None
    written_sha256: str | None = Field(
        default=None, description="Refuse if the file changed since the write (unless force)."
    )
    force: bool = False


def version_of(data: bytes | None) -> str:
    """The version of a file's bytes (sha256 hex), ``absent`` for no file."""
    return ABSENT if data is None else hashlib.sha256(data).hexdigest()


def file_resource(rel: str, root: str | None = None) -> str:
    """The resource name of ``rel`` (normalised): ``file:<rel>`` in the working directory,
    ``file@<root>:<rel>`` in the plan's declared root ``root`` (see the module docstring)."""
    return f"file:{rel}" if root is None else f"file@{root}:{rel}"


def file_resources(params: Any) -> list[str]:
    """The lock one call touches (PathRefused for a bad path): see :func:`file_resource`."""
    return [file_resource(relative_path(params.path), params.root)]


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one call's file is: the folder it is confined to, its normalised relative path
    and how it is named in resources and messages."""

    base: Path
    rel: str
    root: str | None

    @property
    def resource(self) -> str:
        return file_resource(self.rel, self.root)

    @property
    def strict(self) -> bool:
        """A declared root (checked to hold no symlink at run start) is opened strictly."""
        return self.root is not None

    @property
    def shown(self) -> str:
        return self.rel if self.root is None else f"{self.root}:{self.rel}"

    def undo_params(self) -> dict[str, Any]:
        return {"path": self.rel} if self.root is None else {"path": self.rel, "root": self.root}


def _target(ctx: ActionContext, params: _Params) -> _Target:
    """The call's target; PathRefused for a bad path or a root the plan does not declare."""
    rel = relative_path(params.path)
    if params.root is None:
        return _Target(ctx.workdir, rel, None)
    base = ctx.file_roots.get(params.root)
    if base is None:
        declared = ", ".join(sorted(ctx.file_roots)) or "none"
        raise PathRefused(
            params.path, f"root {params.root!r} is not declared by the plan (declared: {declared})"
        )
    return _Target(base, rel, params.root)


def _refused(action: str, exc: PathRefused) -> ActionResult:
    return ActionResult(
        ok=False,
        summary=f"{action} refused: {exc}",
        details={"status": "refused", "path": exc.path},
    )


async def _load(target: _Target) -> bytes | None:
    data = await anyio.to_thread.run_sync(
        partial(read_file, strict=target.strict), target.base, target.rel, MAX_BYTES
    )
    if data is not None and len(data) > MAX_BYTES:
        raise PathRefused(target.shown, f"is larger than {MAX_BYTES} bytes")
    return data


async def run_read(ctx: ActionContext, params: FileReadParams) -> ActionResult:
    """The file's text and version; not ok when it does not exist or is not UTF-8 text."""
    try:
        t = _target(ctx, params)
        rel = t.shown
        data = await _load(t)
    except PathRefused as exc:
        return _refused("file.read", exc)
    version = version_of(data)
    versions = {t.resource: version}
    if data is None:
        return ActionResult(
            ok=False, summary=f"{rel}: no such file", details={"path": rel, "versions": versions}
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ActionResult(ok=False, summary=f"{rel}: not UTF-8 text ({len(data)} bytes)")
    evidence = Evidence(
        check=f"file.read {rel}",
        source="file",
        detail={"path": rel, "bytes": len(data)},
        excerpt=mask_text(text[:_EXCERPT]),
        sha256=version,
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=True,
        summary=f"read {rel} ({len(data)} bytes, version {version})",
        output=text,
        output_sha256=version,
        output_bytes=len(data),
        evidence=(evidence,),
        details={"path": rel, "version": version, "versions": versions},
    )


def _stale_reason(expected: str | None, current: bytes | None) -> str | None:
    """Why a write over ``current`` with ``expected`` is stale, or None."""
    if expected is None:
        return None
    now = version_of(current)
    if expected == UNREAD:
        return None if current is None else "you never read it in this session: file.read it first"
    if expected == now:
        return None
    if current is None:
        return "it was removed since you read it"
    if expected == ABSENT:
        return "it exists now (it did not when you looked): file.read it first"
    return f"it changed since you read it (now version {now}): file.read it again"


async def _replace(t: _Target, action: str, before: bytes | None, after: bytes) -> ActionResult:
    rel = t.shown
    await anyio.to_thread.run_sync(partial(write_file, strict=t.strict), t.base, t.rel, after)
    old_text = "" if before is None else before.decode("utf-8", "replace")
    diff = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            after.decode("utf-8", "replace").splitlines(keepends=True),
            f"a/{rel}",
            f"b/{rel}",
        )
    )
    sha_before, sha_after = version_of(before), version_of(after)
    detail = {"path": rel, "sha256_before": sha_before, "sha256_after": sha_after}
    evidence = Evidence(
        check=f"{action} {rel}",
        source="file",
        detail=detail,
        excerpt=mask_text(diff[:_EXCERPT]),
        sha256=sha_after,
        at=utc_timestamp(),
    )
    undo = UndoRecord(
        "file.restore",
        {
            **t.undo_params(),
            "content_b64": None if before is None else base64.b64encode(before).decode(),
            "written_sha256": sha_after,
        },
        f"remove {rel}" if before is None else f"put back {rel} as it was (version {sha_before})",
    )
    verb = "created" if before is None else "wrote"
    return ActionResult(
        ok=True,
        summary=f"{verb} {rel} ({len(after)} bytes, version {sha_after})",
        output=mask_text(diff[:_EXCERPT]),
        evidence=(evidence,),
        undo=undo,
        details={**detail, "version": sha_after, "versions": {t.resource: sha_after}},
    )


def _stale(action: str, rel: str, reason: str, current: bytes | None) -> ActionResult:
    return ActionResult(
        ok=False,
        summary=f"{action} {rel} refused, stale: {reason}",
        details={"status": "stale", "path": rel, "version": version_of(current)},
    )


async def run_write(ctx: ActionContext, params: FileWriteParams) -> ActionResult:
    """Write the file (atomically) unless the writer's view of it is stale."""
    try:
        t = _target(ctx, params)
        rel = t.shown
        before = await _load(t)
    except PathRefused as exc:
        return _refused("file.write", exc)
    if (reason := _stale_reason(params.expected_version, before)) is not None:
        return _stale("file.write", rel, reason, before)
    try:
        return await _replace(t, "file.write", before, params.content.encode())
    except PathRefused as exc:
        return _refused("file.write", exc)


async def run_edit(ctx: ActionContext, params: FileEditParams) -> ActionResult:
    """Apply the replacements (all or none) unless the writer's view is stale."""
    try:
        t = _target(ctx, params)
        rel = t.shown
        before = await _load(t)
    except PathRefused as exc:
        return _refused("file.edit", exc)
    if before is None:
        return ActionResult(ok=False, summary=f"file.edit {rel}: no such file (file.write creates)")
    if (reason := _stale_reason(params.expected_version, before)) is not None:
        return _stale("file.edit", rel, reason, before)
    try:
        text = before.decode("utf-8")
    except UnicodeDecodeError:
        return ActionResult(ok=False, summary=f"file.edit {rel}: not UTF-8 text")
    for number, op in enumerate(params.operations(), 1):
        count = text.count(op.old_string)
        if count == 0 or (count > 1 and not op.replace_all):
            found = "not found" if count == 0 else f"found {count} times (set replace_all)"
            return ActionResult(
                ok=False,
                summary=f"file.edit {rel}: edit {number}: old_string {found}; nothing written",
            )
        text = text.replace(op.old_string, op.new_string, -1 if op.replace_all else 1)
    return await _replace(t, "file.edit", before, text.encode())


async def run_restore(ctx: ActionContext, params: FileRestoreParams) -> ActionResult:
    """Put back the previous content, or remove a file that did not exist before."""
    try:
        t = _target(ctx, params)
        rel = t.shown
        current = await _load(t)
    except PathRefused as exc:
        return _refused("file.restore", exc)
    now = version_of(current)
    if params.written_sha256 not in (None, now) and not params.force:
        return ActionResult(
            ok=False,
            summary=f"file.restore {rel}: it changed since the write (now version {now}); "
            "not restoring (force: true restores anyway)",
        )
    detail: dict[str, Any] = {"path": rel, "sha256_before": now}
    if params.content_b64 is None:
        removed = await anyio.to_thread.run_sync(
            partial(remove_file, strict=t.strict), t.base, t.rel
        )
        detail["sha256_after"] = ABSENT
        summary = f"removed {rel}" if removed else f"{rel} was already gone"
    else:
        original = base64.b64decode(params.content_b64)
        await anyio.to_thread.run_sync(
            partial(write_file, strict=t.strict), t.base, t.rel, original
        )
        detail["sha256_after"] = version_of(original)
        summary = f"restored {rel} ({len(original)} bytes)"
    evidence = Evidence(
        check=f"file.restore {rel}",
        source="file",
        detail=detail,
        sha256=None if detail["sha256_after"] == ABSENT else detail["sha256_after"],
        at=utc_timestamp(),
    )
    versions = {t.resource: detail["sha256_after"]}
    return ActionResult(
        ok=True, summary=summary, evidence=(evidence,), details={**detail, "versions": versions}
    )


def register(registry: ActionRegistry) -> None:
    """Add the file.* actions to ``registry``."""
    reg = registry.register
    reg("file.read", FileReadParams, "read a text file and its version", file_resources)(run_read)
    reg("file.write", FileWriteParams, "write a text file (atomic, undoable)", file_resources)(
        run_write
    )
    reg("file.edit", FileEditParams, "replace exact text in a file (undoable)", file_resources)(
        run_edit
    )
    reg("file.restore", FileRestoreParams, "put a file back as it was", file_resources)(run_restore)
