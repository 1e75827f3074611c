"""Recording an in-process run (``orchestrator run``) in the run store while it runs.

:func:`record_run` starts the recorder process (:mod:`orchestrator.store.recorder`) and
yields a :class:`RunRecorder`, an :class:`~orchestrator.events.EventSink` that hands each
event's JSON line to it. The run's process does no store work itself: the lines are the
events file's, made once, and go down a pipe a tick's worth at a time.

A store that cannot be reached, a recorder that dies, stalls or falls 64 MiB behind cost
the history, not the run: it is logged once (``run_not_recorded``, secrets masked) and the
rest of the run's events are not sent (the events file still has all). If the run's process
dies, the recorder stores what it was sent and exits. The run is stored with origin
``orchestrator run``, which a daemon sharing the store never takes for one to resume.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import Process

import orchestrator
from foundation.secrets import mask_text
from orchestrator.events import event_line
from orchestrator.settings import Settings
from orchestrator.store import IN_PROCESS_ORIGIN, RunRecord, RunStatus
from orchestrator.store.recorder import RecorderHeader
from streams.model import Plan

__all__ = ["RunRecorder", "record_run"]

_log = structlog.get_logger("orchestrator.recording")

#: The project's root, put first on the recorder's import path (as the run's process found it).
_ROOT = str(Path(orchestrator.__file__).resolve().parent.parent)


class RunRecorder:
    """Sends the run's events to the recorder process (see the module's text): each event's
    line waits in memory until :meth:`write_forever` sends what waits, at most every
    :attr:`SEND_INTERVAL_S`."""

    SEND_INTERVAL_S = 0.05
    #: Lines waiting beyond this (the recorder is stalled) end the recording.
    BACKLOG_BYTES = 64 * 1024 * 1024

    def __init__(self, run_id: str, timeout_s: float, secrets: list[str]) -> None:
        self.run_id = run_id
        self.timeout_s = timeout_s
        self.failed = False
        self.stored: int | None = None  # events the recorder stored, once it has said so
        self._secrets = secrets
        self._proc: Process | None = None
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._wake = anyio.Event()

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.failed:
            return
        line = event_line(event)
        self._pending.append(line)
        self._pending_bytes += len(line)
        if len(self._pending) == 1:
            self._wake.set()
        elif self._pending_bytes > self.BACKLOG_BYTES:
            self._fail(f"the recorder fell {self.BACKLOG_BYTES >> 20} MiB behind")

    async def write_forever(self) -> None:
        """Send what waits, until cancelled (a task of the caller's for the run's length)."""
        while not self.failed:
            await self._wake.wait()
            self._wake = anyio.Event()
            with anyio.CancelScope(shield=True):  # lines taken are lines sent
                await self._send()
            await anyio.sleep(self.SEND_INTERVAL_S)

    async def _send(self) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or not self._pending or self.failed:
            return
        data = ("\n".join(self._pending) + "\n").encode()
        self._pending, self._pending_bytes = [], 0
        try:
            with anyio.fail_after(self.timeout_s):
                await proc.stdin.send(data)
        except TimeoutError:
            self._fail(f"the recorder took no events for {self.timeout_s:g}s")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._fail_with_reply("the recorder process ended early")

    async def _start(self, header: RecorderHeader) -> None:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        with anyio.fail_after(self.timeout_s):
            proc = await anyio.open_process(
                [sys.executable, "-m", "orchestrator.store.recorder"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                env=env,
                start_new_session=True,  # a Ctrl-C at the terminal is the run's to handle
            )
        self._proc = proc
        # Sent first by write_forever: the run starts meanwhile (a plan's text can be more
        # than the pipe holds until the recorder has started and reads).
        self._pending.insert(0, header.to_json().decode())
        self._wake.set()

    async def _finish(self) -> None:
        """Send the rest, end the recorder's input and wait for its last word."""
        proc = self._proc
        if proc is None:
            return
        await self._send()
        if not self.failed and proc.stdin is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await proc.stdin.aclose()  # end of input: it stores the rest, then says so
            await self._fail_with_reply("the recorder process ended without a word")
        if proc.returncode is None:
            proc.kill()
        with anyio.move_on_after(self.timeout_s):
            await proc.aclose()

    async def _fail_with_reply(self, otherwise: str) -> None:
        """Wait for the recorder to end and read its replies: fail with its error (or
        ``otherwise`` if it ended without its count), or take its count of stored events."""
        replies = await self._replies()
        if replies is None:
            self._fail(f"the recorder did not finish within {self.timeout_s:g}s")
        elif "stored" in replies and "error" not in replies:
            self.stored = int(replies["stored"])
        else:
            self._fail(str(replies.get("error") or otherwise))

    async def _replies(self) -> dict[str, Any] | None:
        """The recorder's replies once it has ended (None: it did not end in time)."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        data = b""
        with anyio.move_on_after(self.timeout_s):
            await proc.wait()
            async for chunk in proc.stdout:
                data += chunk
            found: dict[str, Any] = {}
            for line in data.splitlines():
                with contextlib.suppress(orjson.JSONDecodeError):
                    reply = orjson.loads(line)
                    if isinstance(reply, dict):
                        found.update(reply)
            return found
        return None

    def _fail(self, error: str) -> None:
        if self.failed:
            return
        self.failed = True
        self._pending, self._pending_bytes = [], 0
        _log.warning("run_not_recorded", run_id=self.run_id, error=mask_text(error, self._secrets))
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()  # it stores nothing more; a stalled one would wait for input forever


@asynccontextmanager
async def record_run(
    settings: Settings,
    plan: Plan,
    plan_text: str,
    workdir: Path,
    run_id: str,
    timeout_s: float = 30.0,
) -> AsyncIterator[RunRecorder]:
    """Store an in-process run and its events while it runs, into the daemon's store.

    Yields the sink to give the run, whose :meth:`RunRecorder.write_forever` the caller
    runs as a task meanwhile; on exit, what is left is sent and the recorder is waited for
    (shielded, each step within ``timeout_s``). A recorder that cannot start, or a store
    that cannot be reached, is logged and otherwise ignored.
    """
    recorder = RunRecorder(run_id, timeout_s, settings.secrets())
    record = RunRecord(
        run_id=run_id,
        plan=plan.plan,
        plan_source=plan_text,
        workdir=workdir,
        status=RunStatus.RUNNING,
        options={"origin": IN_PROCESS_ORIGIN},
    )
    header = RecorderHeader(settings.store_url(), settings.state_dir, timeout_s, record)
    try:
        await recorder._start(header)
    except (OSError, TimeoutError) as exc:
        recorder._fail(f"the recorder process could not start: {exc}")
    try:
        yield recorder
    finally:
        with anyio.CancelScope(shield=True):
            await recorder._finish()
