"""Containment of step processes, against real processes and the real watchdog."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import anyio
import pytest

from agents.actions.command import CommandParams, run_command
from agents.base import ActionContext
from agents.processes.containment import (
    containment,
    end_step_process,
    lease_lapsed,
    open_containment,
    open_step_process,
    reap_predecessors,
    step_lease,
)
from agents.processes.watchdog import TOKEN_VAR, start_time
from tests.procs import survivors


def _ctx(tmp_path: Path) -> ActionContext:
    return ActionContext(
        run_id="r",
        stream="s",
        step="t",
        agent="a",
        attempt=1,
        fences={},
        env={"PATH": os.environ["PATH"]},
        workdir=tmp_path,
        kill_grace_s=0.5,
    )


async def test_setsid_grandchildren_end_with_their_command(tmp_path: Path, nonce: str) -> None:
    # The case: `sh -c "setsid sleep 1006 &"` used to leave the sleep running (and
    # holding the command's stdout open).
    script = f"setsid sleep 1006.{nonce} & setsid sh -c 'sleep 1007.{nonce} & wait' & echo ok"
    result = await run_command(_ctx(tmp_path), CommandParams(argv=["sh", "-c", script]))
    assert result.ok and result.output.strip() == "ok"
    assert survivors(nonce) == []


async def test_the_token_marks_the_whole_tree(tmp_path: Path) -> None:
    result = await run_command(
        _ctx(tmp_path), CommandParams(argv=["sh", "-c", f"setsid sh -c 'echo ${TOKEN_VAR}'"])
    )
    assert result.output.strip().startswith(f"{containment().prefix}.")


@pytest.mark.parametrize("checkpoints", range(0, 40, 2))
async def test_a_cancel_at_any_point_of_the_start_leaves_no_process(
    tmp_path: Path, nonce: str, checkpoints: int
) -> None:
    """The cancel lands after ``checkpoints`` turns of the event loop: before, during or
    after ``open_process``; whichever, the process (and its group) is ended."""
    params = CommandParams(argv=["sh", "-c", f"sleep 1008.{nonce} & sleep 1009.{nonce}"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_command, _ctx(tmp_path), params)
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert survivors(nonce) == []


async def test_watchdog_ends_a_leased_step_while_the_daemon_is_frozen(
    tmp_path: Path, nonce: str
) -> None:
    lease_s = 0.4
    key = f"r/s/t-{nonce}"
    dog = containment()
    dog.lease_granted(key, time.monotonic() + lease_s, lease_s)
    try:
        with step_lease(key):
            step = await open_step_process(
                ["sleep", f"1010.{nonce}"], env={"PATH": os.environ["PATH"]}, cwd=tmp_path
            )
        try:
            # The event loop is blocked (as in a SIGSTOPped daemon): nothing here renews the
            # lease or kills the step; only the watchdog can.
            time.sleep(lease_s)  # noqa: ASYNC251 - blocking on purpose: a frozen daemon
            with anyio.fail_after(30):
                await step.process.wait()
            assert step.process.returncode == -signal.SIGKILL
            assert lease_lapsed(key)
            # A renewal after the lapse does not revive it: the holder counts it lost.
            assert not dog.lease_renewed(key, time.monotonic() + lease_s, lease_s)
        finally:
            await end_step_process(step)
            await step.process.aclose()
    finally:
        dog.lease_released(key)


async def test_a_live_owners_record_is_kept_and_a_dead_ones_reaped(
    tmp_path: Path, nonce: str
) -> None:
    records = tmp_path / "state" / "watchdog"
    async with open_containment(tmp_path / "state"):
        own = records / f"{containment().prefix}.procs"
        assert own.exists()
        assert reap_predecessors(records) == 0 and own.exists()
        # A predecessor that died: its orphan carries its token prefix.
        orphan = await anyio.open_process(
            ["sleep", f"1011.{nonce}"],
            env={"PATH": os.environ["PATH"], TOKEN_VAR: "1-deadbeef.1"},
            start_new_session=True,
        )
        dead = records / "1-deadbeef.procs"
        dead.write_text(
            f"owner 999999999 1\nprefix 1-deadbeef\ngroup {orphan.pid} {start_time(orphan.pid)}\n"
        )
        try:
            assert reap_predecessors(records) >= 1
            with anyio.fail_after(30):
                await orphan.wait()
            assert not dead.exists() and own.exists()
        finally:
            await orphan.aclose()
    assert not own.exists()


def _watchdogs() -> list[int]:
    """This process's live watchdog children."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"watchdog.py" in cmdline:
            found.append(int(name))
    return found


async def test_a_killed_watchdog_is_replaced_and_told_what_runs(tmp_path: Path, nonce: str) -> None:
    lease_s = 0.4
    key = f"r/s/t-{nonce}"
    dog = containment()
    dog.lease_granted(key, time.monotonic() + 60, lease_s)
    try:
        with step_lease(key):
            step = await open_step_process(
                ["sleep", f"1012.{nonce}"], env={"PATH": os.environ["PATH"]}, cwd=tmp_path
            )
        try:
            (old,) = _watchdogs()
            pidfd = os.pidfd_open(old)
            try:
                os.kill(old, signal.SIGKILL)
                assert select.select([pidfd], [], [], 30)[0], "the watchdog did not die"
            finally:
                os.close(pidfd)
            # The next message finds it gone: a new watchdog learns the step and its lease.
            assert dog.lease_renewed(key, time.monotonic() + lease_s, lease_s)
            assert _watchdogs() and old not in _watchdogs()
            time.sleep(lease_s)  # noqa: ASYNC251 - blocking on purpose: a frozen daemon
            with anyio.fail_after(30):
                await step.process.wait()
            assert step.process.returncode == -signal.SIGKILL
        finally:
            await end_step_process(step)
            await step.process.aclose()
    finally:
        dog.lease_released(key)
