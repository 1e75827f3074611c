"""Plan-declared file roots (``files: {roots: {NAME: dir}}``): file actions with ``root: NAME``
work inside that folder, with the working directory's confinement (no ``..``, no absolute
path, no symlink followed) out of every root; resource names ``file@NAME:<path>``; the plan
refuses roots that are missing, reached through a symlink or overlap; a whole run, with an
LLM agent's tool calls through the gate."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from agents.actions.file import (
    FileReadParams,
    FileRestoreParams,
    FileWriteParams,
    file_resources,
    run_read,
    run_restore,
    run_write,
)
from agents.base import ActionContext
from context_packages import build_package
from foundation.errors import PlanInvalid
from orchestrator.scheduler import RunStatus
from streams.loader import load_plan
from tests.agents.actions.conftest import MakeCtx
from tests.agents.drivers.llm.openai_server import openai_server, tool_call
from tests.helpers import events_named, plan_from, run_plan


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A declared root beside the working directory (``tmp_path``'s sibling)."""
    folder = tmp_path.parent / f"{tmp_path.name}-shared"
    folder.mkdir()
    return folder


def in_roots(make_ctx: MakeCtx, shared: Path) -> ActionContext:
    return dataclasses.replace(make_ctx(), file_roots={"shared": shared})


async def test_a_write_inside_a_declared_root_succeeds_and_is_undone(
    make_ctx: MakeCtx, shared: Path, tmp_path: Path
) -> None:
    ctx = in_roots(make_ctx, shared)
    params = FileWriteParams(path="notes/a.txt", root="shared", content="hi\n")
    assert file_resources(params) == ["file@shared:notes/a.txt"]
    wrote = await run_write(ctx, params)
    assert wrote.ok, wrote.summary
    assert (shared / "notes" / "a.txt").read_text() == "hi\n"
    assert not (tmp_path / "notes").exists()  # not the working directory
    assert list(wrote.details["versions"]) == ["file@shared:notes/a.txt"]
    assert "shared:notes/a.txt" in wrote.summary
    read = await run_read(ctx, FileReadParams(path="notes/a.txt", root="shared"))
    assert read.ok and read.output == "hi\n"
    assert wrote.undo is not None and wrote.undo.params["root"] == "shared"
    undone = await run_restore(ctx, FileRestoreParams(**wrote.undo.params))
    assert undone.ok, undone.summary
    assert not (shared / "notes" / "a.txt").exists()


def test_resource_names_never_collide() -> None:
    names = {
        file_resources(FileReadParams(path=p, root=r))[0]
        for p, r in [("a.txt", None), ("a.txt", "shared"), ("shared:a.txt", None), ("@x", None)]
    }
    assert len(names) == 4
    assert file_resources(FileReadParams(path="a.txt"))[0] == "file:a.txt"


@pytest.mark.parametrize("root", [None, "shared"])
async def test_escapes_out_of_every_root_are_refused(
    make_ctx: MakeCtx, shared: Path, tmp_path: Path, root: str | None
) -> None:
    ctx = in_roots(make_ctx, shared)
    base = shared if root else tmp_path
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (base / "link").symlink_to(outside)
    (base / "file-link").symlink_to(outside / "secret.txt")
    attempts = [
        "../outside.txt",
        f"../{outside.name}/x.txt",
        str(outside / "x.txt"),
        "link/x.txt",
        "file-link",
    ]
    for path in attempts:
        result = await run_write(ctx, FileWriteParams(path=path, root=root, content="pwned\n"))
        assert not result.ok and result.details.get("status") == "refused", (path, result)
        read = await run_read(ctx, FileReadParams(path=path, root=root))
        assert not read.ok and "secret" not in read.output, (path, read)
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret\n"
    assert not (tmp_path.parent / "outside.txt").exists()


def _swap_for_link(folder: Path, moved: Path, target: Path) -> None:
    """Move ``folder`` away and put a symlink to ``target`` under its name."""
    folder.rename(moved)
    folder.symlink_to(target)


async def test_a_root_swapped_for_a_symlink_after_the_run_started_is_not_followed(
    make_ctx: MakeCtx, shared: Path, tmp_path: Path
) -> None:
    ctx = in_roots(make_ctx, shared)  # checked to hold no symlink when the run started
    assert (await run_write(ctx, FileWriteParams(path="a.txt", root="shared", content="x"))).ok
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    _swap_for_link(shared, tmp_path.parent / f"{tmp_path.name}-moved", elsewhere)
    result = await run_write(ctx, FileWriteParams(path="b.txt", root="shared", content="x"))
    assert not result.ok and result.details["status"] == "refused", result.summary
    assert "is now a symlink" in result.summary
    read = await run_read(ctx, FileReadParams(path="a.txt", root="shared"))
    assert not read.ok and read.details["status"] == "refused"
    assert list(elsewhere.iterdir()) == []


async def test_an_undeclared_root_is_refused(make_ctx: MakeCtx, shared: Path) -> None:
    ctx = in_roots(make_ctx, shared)
    result = await run_write(ctx, FileWriteParams(path="a.txt", root="other", content="x"))
    assert not result.ok and result.details["status"] == "refused"
    assert "root 'other' is not declared by the plan (declared: shared)" in result.summary
    restore = FileRestoreParams(
        path="a.txt", root="other", content_b64=base64.b64encode(b"x").decode()
    )
    assert not (await run_restore(ctx, restore)).ok


PLAN = """\
plan: roots
caps: {io: 1}
files:
  roots:
    shared: %s
agents:
  writer: {class: io, can: [file.write]}
streams:
  - id: s
    team: [writer]
    steps:
      - {id: w, agent: writer, action: file.write, with: {path: a.txt, root: shared, content: x}}
"""


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        ("missing", "missing: no such folder"),
        ("linked", "linked: leads through a symlink"),
        ("inside", "inside: is, holds or lies inside the working directory"),
        (".", ".: is, holds or lies inside the working directory"),
        ("..", "..: is, holds or lies inside the working directory"),
    ],
)
def test_the_plan_refuses_unusable_roots(tmp_path: Path, declared: str, reason: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "inside").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (work / "linked").symlink_to(tmp_path / "elsewhere")
    plan = work / "plan.yaml"
    plan.write_text(PLAN % declared)
    with pytest.raises(PlanInvalid) as caught:
        load_plan(plan)
    (problem,) = caught.value.problems
    assert problem.line == 5 and f"file root 'shared': {reason}" in problem.reason, problem


def test_the_plan_accepts_a_sibling_and_an_absolute_root(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    plan = work / "plan.yaml"
    for declared in ("../shared", str(tmp_path / "shared")):
        plan.write_text(PLAN % declared)
        loaded = load_plan(plan)
        assert loaded.files is not None and loaded.files.roots == {"shared": declared}


def test_the_agents_context_package_names_its_file_roots(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    plan = work / "plan.yaml"
    plan.write_text(PLAN % "../shared")
    scope = build_package(load_plan(plan), "writer").markdown
    assert "**Files**: paths relative to the run's working directory" in scope
    assert "with `root: NAME`, relative to a declared root: `shared` (`../shared`)" in scope


async def test_a_run_writes_in_a_declared_root_and_refuses_escapes(tmp_path: Path) -> None:
    work, shared = tmp_path / "work", tmp_path / "shared"
    work.mkdir()
    shared.mkdir()

    def brain(request: dict[str, Any]) -> dict[str, Any]:
        messages = request["messages"]
        done = [m for m in messages if m["role"] == "tool"]
        if len(done) == 0:
            return tool_call(messages, "file_write", path="n.txt", root="shared", content="1\n")
        if len(done) == 1:
            return tool_call(
                messages, "file_write", path="../work/x.txt", root="shared", content="2\n"
            )
        return {"content": "done"}

    with openai_server(brain) as server:
        agents = {
            "writer": {
                "class": "io",
                "can": ["file.write"],
                "driver": {
                    "llm": {"provider": "openai", "model": "m", "base_url": server.base_url}
                },
            },
            "stepper": {"class": "io", "can": ["file.write"]},
        }
        steps = [
            {"id": "talk", "agent": "writer", "instruction": "Write n.txt in shared"},
            {
                "id": "plain",
                "agent": "stepper",
                "action": "file.write",
                "with": {"path": "p.txt", "root": "shared", "content": "3\n"},
            },
        ]
        streams = [{"id": "s", "team": ["writer", "stepper"], "steps": steps}]
        plan = plan_from(
            streams, agents=agents, caps={"io": 1}, files={"roots": {"shared": str(shared)}}
        )
        result, events = await run_plan(plan, workdir=work)
    assert result.status is RunStatus.SUCCEEDED, events_named(events, "step_finished")
    assert (shared / "n.txt").read_text() == "1\n" and (shared / "p.txt").read_text() == "3\n"
    assert sorted(os.listdir(work)) == []
    calls = [(e["tool"], e["status"]) for e in events_named(events, "tool_called")]
    assert calls == [("file.write", "ok"), ("file.write", "refused")]
