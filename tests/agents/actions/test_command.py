"""The command action against real subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from agents.actions.command import BoundedCapture, CommandParams, run_command
from agents.base import ActionContext


def ctx(tmp_path: Path, env: dict[str, str] | None = None) -> ActionContext:
    return ActionContext(
        run_id="r",
        stream="s",
        step="t",
        agent="a",
        attempt=1,
        fences={},
        env=env if env is not None else {"PATH": os.environ["PATH"]},
        workdir=tmp_path,
        kill_grace_s=0.5,
    )


async def test_captures_exit_code_and_output(tmp_path: Path) -> None:
    result = await run_command(
        ctx(tmp_path), CommandParams(argv=["sh", "-c", "echo out; echo err >&2; exit 3"])
    )
    assert not result.ok and result.exit_code == 3
    assert "out" in result.output and "err" in result.output
    assert result.summary == "sh exited 3: err"


async def test_no_shell_unless_asked(tmp_path: Path) -> None:
    result = await run_command(ctx(tmp_path), CommandParams(argv=["echo", "$HOME", "*"]))
    assert result.ok and result.output.strip() == "$HOME *"


async def test_environment_is_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEST_SECRET", "hunter2")
    result = await run_command(ctx(tmp_path), CommandParams(argv=["env"], env={"ONLY": "me"}))
    assert "ONLY=me" in result.output
    assert "hunter2" not in result.output


async def test_missing_program_is_a_clear_failure(tmp_path: Path) -> None:
    result = await run_command(ctx(tmp_path), CommandParams(argv=["no-such-program-xyz"]))
    assert not result.ok
    assert "could not start 'no-such-program-xyz'" in result.summary


async def test_output_is_bounded_but_counted_and_hashed(tmp_path: Path) -> None:
    result = await run_command(
        ctx(tmp_path),
        CommandParams(
            argv=["sh", "-c", "head -c 5000000 /dev/zero | tr '\\0' x"], output_limit=1024
        ),
    )
    assert result.ok
    assert result.output_bytes == 5_000_000
    assert len(result.output) < 2048 and "bytes not kept" in result.output
    assert result.output_sha256 and len(result.output_sha256) == 64


def test_bounded_capture_keeps_head_and_tail() -> None:
    capture = BoundedCapture(10)
    for chunk in [b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"]:
        capture.feed(chunk)
    assert capture.total == 26
    assert capture.text() == "abcde\n[... 16 bytes not kept ...]\nvwxyz"


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    script = f"sleep 300 & echo $! > {pidfile}; trap '' TERM; wait"
    with anyio.move_on_after(1.0):
        await run_command(ctx(tmp_path), CommandParams(argv=["sh", "-c", script]))
    await _gone(int(pidfile.read_text()))


async def test_background_children_end_with_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    with anyio.fail_after(10):
        result = await run_command(
            ctx(tmp_path),
            CommandParams(argv=["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started"]),
        )
    assert result.ok
    await _gone(int(pidfile.read_text()))


async def _gone(pid: int) -> None:
    with anyio.fail_after(5):
        while _alive(pid):  # noqa: ASYNC110 - the kernel offers no event for another's pid
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


async def test_evidence_and_parsed_metrics(tmp_path: Path) -> None:
    script = "echo 'redis.noauth_errors=0'; echo 'db.response_ms.p50: 84.5'; echo 'not a metric'"
    result = await run_command(
        ctx(tmp_path), CommandParams(argv=["sh", "-c", script], parse_metrics=True)
    )
    assert result.metrics == {
        "redis.noauth_errors": 0.0,
        "db.response_ms.p50": 84.5,
        "exit_code": 0.0,
    }
    (evidence,) = result.evidence
    assert evidence.source == "command" and evidence.verified
    assert evidence.detail["exit_code"] == 0 and "redis.noauth_errors=0" in evidence.excerpt
    assert evidence.sha256 and len(evidence.sha256) == 64
