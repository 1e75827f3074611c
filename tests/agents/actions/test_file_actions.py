"""file.read / file.write / file.edit / file.restore: confinement, stale guard, atomic writes,
evidence and undo, on a real file system."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from agents.actions import builtin_registry
from agents.actions.file import (
    ABSENT,
    UNREAD,
    FileEditParams,
    FileReadParams,
    FileRestoreParams,
    FileWriteParams,
    run_edit,
    run_read,
    run_restore,
    run_write,
)
from agents.actions.file_paths import PathRefused, relative_path
from tests.agents.actions.conftest import MakeCtx


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_read_returns_the_text_and_its_version(make_ctx: MakeCtx, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "redis.conf").write_bytes(b"port 6379\n")
    result = await run_read(make_ctx(), FileReadParams(path="./conf//redis.conf"))
    assert result.ok
    assert result.output == "port 6379\n"
    assert result.details["version"] == sha(b"port 6379\n")
    assert result.details["versions"] == {"file:conf/redis.conf": sha(b"port 6379\n")}
    assert result.evidence[0].sha256 == sha(b"port 6379\n")
    missing = await run_read(make_ctx(), FileReadParams(path="nope.txt"))
    assert not missing.ok and "no such file" in missing.summary
    assert missing.details["versions"] == {"file:nope.txt": ABSENT}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("../outside.txt", "'..'"),
        ("a/../../outside.txt", "'..'"),
        ("/etc/passwd", "absolute"),
        ("", "non-empty"),
        (".", "working directory itself"),
        ("a\x00b", "NUL"),
    ],
)
def test_lexical_escapes_are_refused(raw: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why):
        relative_path(raw)


async def test_a_symlink_to_outside_is_never_followed(make_ctx: MakeCtx, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("top secret\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "link.txt").symlink_to(secret)  # the file itself is a symlink
    (work / "linkdir").symlink_to(outside)  # a directory on the way is a symlink
    ctx = dataclasses.replace(make_ctx(), workdir=work)
    for path in ("link.txt", "linkdir/secret.txt"):
        read = await run_read(ctx, FileReadParams(path=path))
        assert not read.ok and read.details["status"] == "refused", path
        assert "top secret" not in repr(read)
        write = await run_write(ctx, FileWriteParams(path=path, content="pwned\n"))
        assert not write.ok and write.details["status"] == "refused", path
    edit = await run_edit(
        ctx, FileEditParams(path="linkdir/secret.txt", old_string="top", new_string="no")
    )
    assert edit.details["status"] == "refused"
    assert secret.read_text() == "top secret\n"
    # Replacing the symlink's own name is confined too: the rename replaces the link, not
    # its target.
    assert (work / "link.txt").is_symlink()


async def test_stale_writes_are_refused_and_nothing_is_written(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    target = tmp_path / "counter.txt"
    target.write_text("1\n")
    ctx = make_ctx()
    unread = await run_write(
        ctx, FileWriteParams(path="counter.txt", content="2\n", expected_version=UNREAD)
    )
    assert unread.details["status"] == "stale" and "never read" in unread.summary
    read = await run_read(ctx, FileReadParams(path="counter.txt"))
    target.write_text("5\n")  # someone else writes in between
    stale = await run_edit(
        ctx,
        FileEditParams(
            path="counter.txt",
            old_string="1",
            new_string="2",
            expected_version=read.details["version"],
        ),
    )
    assert stale.details["status"] == "stale" and "changed since you read it" in stale.summary
    created_since = await run_write(
        ctx, FileWriteParams(path="counter.txt", content="x", expected_version=ABSENT)
    )
    assert created_since.details["status"] == "stale"
    assert target.read_text() == "5\n"
    fresh = await run_write(
        ctx, FileWriteParams(path="counter.txt", content="6\n", expected_version=sha(b"5\n"))
    )
    assert fresh.ok and target.read_text() == "6\n"


async def test_write_is_atomic_keeps_the_mode_and_records_evidence_and_undo(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    target = tmp_path / "app.env"
    target.write_text("REDIS_PASSWORD=old-secret-value\nPORT=1\n")
    os.chmod(target, 0o600)
    ctx = make_ctx()
    result = await run_edit(
        ctx,
        FileEditParams(
            path="app.env",
            edits=[
                {"old_string": "PORT=1", "new_string": "PORT=2"},
                {"old_string": "old-secret-value", "new_string": "new-secret-value"},
            ],
        ),
    )
    assert result.ok, result.summary
    assert target.read_text() == "REDIS_PASSWORD=new-secret-value\nPORT=2\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["app.env"]  # no temporary file left
    (evidence,) = result.evidence
    assert evidence.detail["sha256_before"] == sha(b"REDIS_PASSWORD=old-secret-value\nPORT=1\n")
    assert evidence.detail["sha256_after"] == sha(target.read_bytes())
    assert "+PORT=2" in evidence.excerpt
    assert "secret-value" not in evidence.excerpt  # masked in the diff
    assert result.undo is not None and result.undo.action == "file.restore"
    undone = await run_restore(ctx, FileRestoreParams(**result.undo.params))
    assert undone.ok
    assert target.read_text() == "REDIS_PASSWORD=old-secret-value\nPORT=1\n"


async def test_undo_of_a_created_file_removes_it(make_ctx: MakeCtx, tmp_path: Path) -> None:
    ctx = make_ctx()
    created = await run_write(ctx, FileWriteParams(path="new/dir/notes.md", content="hi\n"))
    assert created.ok and (tmp_path / "new/dir/notes.md").read_text() == "hi\n"
    assert created.undo is not None and created.undo.params["content_b64"] is None
    (tmp_path / "new/dir/notes.md").write_text("changed by someone\n")
    refused = await run_restore(ctx, FileRestoreParams(**created.undo.params))
    assert not refused.ok and "changed since" in refused.summary
    forced = await run_restore(ctx, FileRestoreParams(**{**created.undo.params, "force": True}))
    assert forced.ok and not (tmp_path / "new/dir/notes.md").exists()


async def test_edit_needs_a_unique_match(make_ctx: MakeCtx, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x x\n")
    ctx = make_ctx()
    twice = await run_edit(ctx, FileEditParams(path="a.txt", old_string="x", new_string="y"))
    assert not twice.ok and "found 2 times" in twice.summary
    every = await run_edit(
        ctx, FileEditParams(path="a.txt", old_string="x", new_string="y", replace_all=True)
    )
    assert every.ok and (tmp_path / "a.txt").read_text() == "y y\n"
    with pytest.raises(ValueError, match="not both"):
        FileEditParams(
            path="a.txt",
            old_string="x",
            new_string="y",
            edits=[{"old_string": "a", "new_string": "b"}],
        )


def test_actions_name_the_resources_one_call_touches() -> None:
    registry = builtin_registry()

    def resources(action: str, params: dict[str, object]) -> list[str]:
        definition = registry[action]
        return definition.resources_of(definition.params.model_validate(params))

    assert resources("file.read", {"path": "./conf/a.yml"}) == ["file:conf/a.yml"]
    assert resources("file.write", {"path": "b", "content": ""}) == ["file:b"]
    assert resources("compose.patch", {"file": "./docker-compose.yml"}) == [
        "file:docker-compose.yml"
    ]
    assert resources("docker.restart", {"container": "redis"}) == ["docker:redis"]
    assert resources("command", {"argv": ["true"]}) == []
    with pytest.raises(PathRefused):
        resources("file.read", {"path": "../x"})


async def test_a_fifo_or_a_directory_is_refused_without_hanging(
    make_ctx: MakeCtx, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe")
    os.mkdir(tmp_path / "folder")
    for name in ("pipe", "folder"):
        read = await run_read(make_ctx(), FileReadParams(path=name))
        assert read.details["status"] == "refused" and "not a regular file" in read.summary
        write = await run_write(make_ctx(), FileWriteParams(path=name, content="x"))
        assert write.details["status"] == "refused"
