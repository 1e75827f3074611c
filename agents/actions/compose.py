"""docker-compose file actions: ``compose.patch``, ``compose.restore``, ``compose.validate``.

``compose.patch`` sets or removes values at dotted paths (``services.redis.command``,
``services.redis.environment.REDIS_PASSWORD``, ``services.redis.command[2]`` or
``services.redis.command.2`` for list items, ``labels["com.example.tier"]`` for keys with
dots). It edits the YAML round-trip (ruamel.yaml), so comments, key order, quoting and
indentation stay as they were and the diff shows only the change: a removed entry takes its
own lines with it (and the comment lines directly above it), never the comments that belong
to its neighbours. Missing mappings on the way to a ``set`` are created; an ``environment``
written as a list of ``KEY=value`` items is addressed by key like a mapping. The file is
written atomically (temporary file, fsync, rename; mode kept) after a backup copy, and the
result's UndoRecord is ``compose.restore``, which puts the original bytes back exactly.

``compose.validate`` runs ``docker-compose -f FILE config -q`` (``docker compose`` when only
the plugin is there). A path that does not exist, or that runs through a scalar, raises
:class:`~foundation.errors.ActionFailed` naming the file, the path and what is there.
Secret values (``--requirepass X``, variables named like ``*PASSWORD*``) are masked in diffs.
"""

from __future__ import annotations

import base64
import difflib
import itertools
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.actions._compose_path import _sha, parse_path
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import MASK, is_secret_name, mask_command, mask_text
from streams.durations import Duration

__all__ = [
    "ComposePatchParams",
    "ComposeRestoreParams",
    "ComposeValidateParams",
    "compose_resources",
    "parse_path",
    "register",
    "run_patch",
    "run_restore",
    "run_validate",
]

#: Originals up to this size travel inside the UndoRecord too (the backup file may go).
INLINE_ORIGINAL_BYTES = 256 * 1024
_EXCERPT = 4096


class ComposePatchParams(BaseModel):
    """Parameters of ``compose.patch``: ``set`` (path -> value) then ``remove`` (paths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1, description="Relative to the run's working directory.")
    set: dict[str, Any] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    backup: bool = Field(default=True, description="Keep a copy beside the file.")
    check: bool = Field(
        default=False,
        description="Run `docker-compose config -q`; put the original back if not ok.",
    )
    env_file: str | None = Field(default=None, description="For check: --env-file.")
    allow_reformat: bool = Field(
        default=False, description="Write even if other lines would change formatting."
    )
    timeout_s: Duration = Field(default=60.0, gt=0)

    @field_validator("set", "remove")
    @classmethod
    def _paths(cls, paths: Any) -> Any:
        for path in paths:  # the keys of set, the items of remove
            parse_path(path)
        return paths


class ComposeRestoreParams(BaseModel):
    """Parameters of ``compose.restore`` (as ``compose.patch``'s UndoRecord gives them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    original_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    original_b64: str | None = None
    backup: str | None = None
    patched_sha256: str | None = Field(
        default=None, description="Refuse if the file changed since (unless force)."
    )
    force: bool = False


class ComposeValidateParams(BaseModel):
    """Parameters of ``compose.validate``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(min_length=1)
    env_file: str | None = None
    binary: list[str] | None = Field(default=None, description="Default: docker-compose.")
    timeout_s: Duration = Field(default=60.0, gt=0)


def _resolve(ctx: ActionContext, file: str) -> Path:
    path = Path(file)
    return (path if path.is_absolute() else ctx.workdir / path).resolve()


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file beside it, fsync, rename, fsync the dir."""
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            if os.geteuid() == 0:
                os.chown(tmp, old.st_uid, old.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _compose_secrets(text: str) -> list[str]:
    """Secret values written literally in a compose file (env and command of services)."""
    from ruamel.yaml import YAML  # here: validating a plan must not pay for ruamel
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe").load(text)
    except YAMLError:
        return []
    found: list[str] = []
    services = data.get("services") if isinstance(data, dict) else None
    for service in (services or {}).values():
        if not isinstance(service, dict):
            continue
        env = service.get("environment") or {}
        pairs = env.items() if isinstance(env, dict) else (str(e).partition("=")[::2] for e in env)
        found += [str(v) for k, v in pairs if is_secret_name(str(k)) and v not in (None, "")]
        command = service.get("command")
        if isinstance(command, list):
            shown = mask_command([str(c) for c in command])
            found += [str(c) for c, s in zip(command, shown, strict=True) if s == MASK]
    return [s for s in found if not s.startswith("$")]


def _diff(before: str, after: str, name: str) -> str:
    secrets = _compose_secrets(before) + _compose_secrets(after)
    lines = difflib.unified_diff(
        before.splitlines(True), after.splitlines(True), f"a/{name}", f"b/{name}", n=2
    )
    return mask_text("".join(lines), secrets)


def _first_difference(a: str, b: str) -> int:
    """The 1-based number of the first line where ``a`` and ``b`` differ."""
    pairs = itertools.zip_longest(a.splitlines(), b.splitlines())
    return next((i for i, (x, y) in enumerate(pairs, 1) if x != y), 1)


def _patched(original: bytes, params: ComposePatchParams, where: str) -> bytes:
    """The file after ``set`` and ``remove`` (line endings kept)."""
    from agents.actions._compose_edit import _Doc, _remove, _set  # ruamel: only when patching

    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        raise ActionFailed("compose.patch", f"{where}: not UTF-8 text") from None
    crlf = "\r\n" in text
    text = text.replace("\r\n", "\n")
    again = _Doc.load(text, where).dump()
    if again != text and not params.allow_reformat:
        line = _first_difference(text, again)
        raise ActionFailed(
            "compose.patch",
            f"{where}:{line}: this file's formatting cannot be kept exactly, so the patch "
            "would rewrite other lines too (fix: pass allow_reformat: true)",
        )
    for dotted, value in params.set.items():
        text = _set(_Doc.load(text, where), dotted, value, where)
    for dotted in params.remove:
        text = _remove(_Doc.load(text, where), dotted, where)
    _Doc.load(text, where)  # the result must parse
    return (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")


async def run_patch(ctx: ActionContext, params: ComposePatchParams) -> ActionResult:
    """Apply ``set`` then ``remove``; write atomically after a backup; the UndoRecord
    (``compose.restore``) puts the original bytes back. ok=False (and the original back)
    when ``check`` is asked and docker-compose rejects the result."""
    path = _resolve(ctx, params.file)
    where = str(path)
    try:
        original = await anyio.Path(path).read_bytes()
    except OSError as exc:
        raise ActionFailed("compose.patch", f"{where}: cannot read: {exc.strerror}") from None
    patched = _patched(original, params, where)
    before_sha, after_sha = _sha(original), _sha(patched)
    diff = _diff(original.decode("utf-8"), patched.decode("utf-8"), path.name)
    changed = sum(1 for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---"))
    detail: dict[str, Any] = {
        "file": where,
        "set": sorted(params.set),
        "remove": list(params.remove),
        "sha256_before": before_sha,
        "sha256_after": after_sha,
        "backup": None,
    }
    metrics: dict[str, float | str] = {"compose.changed_lines": float(changed)}
    evidence = [
        Evidence(
            check=f"compose.patch {path.name}",
            source="compose",
            detail=detail,
            excerpt=diff[:_EXCERPT],
            sha256=after_sha,
            metrics=metrics,
            at=utc_timestamp(),
        )
    ]
    if patched == original:
        summary = f"{path.name} is already as asked: nothing written"
        return ActionResult(
            ok=True, summary=summary, metrics=metrics, evidence=tuple(evidence), details=detail
        )
    backup: Path | None = None
    if params.backup:
        stamp = utc_timestamp().replace(":", "").replace("-", "")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        await anyio.to_thread.run_sync(shutil.copy2, path, backup)
        detail["backup"] = str(backup)
    await anyio.to_thread.run_sync(_write_atomic, path, patched)
    inline = backup is None or len(original) <= INLINE_ORIGINAL_BYTES
    undo: UndoRecord | None = UndoRecord(
        "compose.restore",
        {
            "file": where,
            "original_sha256": before_sha,
            "patched_sha256": after_sha,
            "backup": str(backup) if backup else None,
            "original_b64": base64.b64encode(original).decode() if inline else None,
        },
        f"restore {path.name} as it was",
    )
    ok, summary = True, f"patched {path.name}: {changed} lines changed"
    if params.check:
        try:
            check = await _validate(ctx, path, params.env_file, None, params.timeout_s)
        except BaseException:
            # Cancelled mid-check: nobody will get the UndoRecord, so undo it here.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_write_atomic, path, original)
            raise
        evidence += check.evidence
        if not check.ok:
            await anyio.to_thread.run_sync(_write_atomic, path, original)
            ok, undo, summary = False, None, f"{check.summary}; {path.name} put back as it was"
    return ActionResult(
        ok=ok,
        summary=summary,
        output=diff,
        output_sha256=after_sha,
        metrics=metrics,
        evidence=tuple(evidence),
        undo=undo,
        details=detail,
    )


async def run_restore(ctx: ActionContext, params: ComposeRestoreParams) -> ActionResult:
    """Write the original bytes back (from ``original_b64``, else the backup file, checked
    against ``original_sha256``); refuse when the file changed since the patch."""
    path = _resolve(ctx, params.file)
    where = str(path)
    try:
        current = await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        current = b""
    if params.original_b64 is not None:
        original = base64.b64decode(params.original_b64)
    elif params.backup is not None:
        try:
            original = await anyio.Path(params.backup).read_bytes()
        except OSError as exc:
            raise ActionFailed(
                "compose.restore", f"{params.backup}: cannot read the backup: {exc.strerror}"
            ) from None
    else:
        raise ActionFailed("compose.restore", f"{where}: neither original_b64 nor backup given")
    if _sha(original) != params.original_sha256:
        raise ActionFailed(
            "compose.restore",
            f"{params.backup or 'original_b64'}: its sha256 is "
            "not the original's; refusing to write it",
        )
    now_sha = _sha(current)
    if now_sha == params.original_sha256:
        return ActionResult(ok=True, summary=f"{path.name} is already the original")
    if params.patched_sha256 not in (None, now_sha) and not params.force:
        return ActionResult(
            ok=False,
            summary=f"{path.name} changed since the patch "
            f"(sha256 {now_sha[:12]}); not restoring (pass force: true to "
            "restore anyway)",
        )
    await anyio.to_thread.run_sync(_write_atomic, path, original)
    diff = _diff(current.decode("utf-8", "replace"), original.decode("utf-8", "replace"), path.name)
    detail = {"file": where, "sha256_before": now_sha, "sha256_after": params.original_sha256}
    evidence = Evidence(
        check=f"compose.restore {path.name}",
        source="compose",
        detail=detail,
        excerpt=diff[:_EXCERPT],
        sha256=params.original_sha256,
        at=utc_timestamp(),
    )
    undo = UndoRecord(
        "compose.restore",
        {
            "file": where,
            "original_sha256": now_sha,
            "original_b64": base64.b64encode(current).decode(),
            "patched_sha256": params.original_sha256,
        },
        f"re-apply the patch to {path.name}",
    )
    return ActionResult(
        ok=True,
        summary=f"restored {path.name} ({len(original)} bytes)",
        output=diff,
        evidence=(evidence,),
        undo=undo,
        details=detail,
    )


def _compose_binary(ctx: ActionContext) -> list[str] | None:
    search = ctx.env.get("PATH") or os.environ.get("PATH")
    if found := shutil.which("docker-compose", path=search):
        return [found]
    if found := shutil.which("docker", path=search):
        return [found, "compose"]
    return None


async def _validate(
    ctx: ActionContext,
    path: Path,
    env_file: str | None,
    binary: list[str] | None,
    timeout_s: float,
) -> ActionResult:
    argv = binary or _compose_binary(ctx)
    if argv is None:
        return ActionResult(
            ok=False,
            summary="no docker-compose to validate with (fix: "
            "apt-get install docker-compose, or pass binary)",
        )
    argv = [*argv, "-f", str(path)]
    if env_file:
        argv += ["--env-file", str(_resolve(ctx, env_file))]
    argv += ["config", "-q"]
    try:
        with anyio.fail_after(timeout_s):
            done = await anyio.run_process(argv, env=dict(ctx.env), cwd=path.parent, check=False)
    except TimeoutError:
        return ActionResult(ok=False, summary=f"{argv[0]} config took over {timeout_s:g}s")
    except OSError as exc:
        return ActionResult(ok=False, summary=f"could not start {argv[0]}: {exc.strerror}")
    content = await anyio.Path(path).read_bytes()
    output = mask_text(
        (done.stdout + done.stderr).decode("utf-8", "replace"),
        _compose_secrets(content.decode("utf-8", "replace")),
    )
    ok = done.returncode == 0
    detail = {"argv": argv, "exit_code": done.returncode, "file": str(path)}
    evidence = Evidence(
        check=f"{Path(argv[0]).name} config -q {path.name}",
        source="command",
        detail=detail,
        excerpt=output[-_EXCERPT:],
        sha256=_sha(content),
        metrics={"exit_code": float(done.returncode)},
        at=utc_timestamp(),
    )
    reason = output.strip().splitlines()[-1][:300] if output.strip() else ""
    summary = (
        f"{path.name}: compose config ok"
        if ok
        else (f"{path.name}: compose config failed (exit {done.returncode}): {reason}")
    )
    return ActionResult(
        ok=ok,
        summary=summary,
        exit_code=done.returncode,
        output=output,
        evidence=(evidence,),
        details=detail,
    )


async def run_validate(ctx: ActionContext, params: ComposeValidateParams) -> ActionResult:
    """``docker-compose -f FILE config -q``: ok when it exits 0."""
    path = _resolve(ctx, params.file)
    if not path.is_file():
        raise ActionFailed("compose.validate", f"{path}: no such file")
    return await _validate(ctx, path, params.env_file, params.binary, params.timeout_s)


def compose_resources(params: Any) -> list[str]:
    """The lock one call touches: ``file:<file>``, like the file.* actions (so an agent's
    file.edit and compose.patch of one file exclude each other)."""
    return [f"file:{os.path.normpath(params.file)}"]


def register(registry: ActionRegistry) -> None:
    """Add the compose.* actions to ``registry``."""
    res = compose_resources
    registry.register(
        "compose.patch",
        ComposePatchParams,
        "set or remove paths in a compose file (undoable)",
        res,
    )(run_patch)
    registry.register(
        "compose.restore", ComposeRestoreParams, "put a compose file back byte for byte", res
    )(run_restore)
    registry.register("compose.validate", ComposeValidateParams, "docker-compose config -q", res)(
        run_validate
    )
