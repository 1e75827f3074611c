"""The recorder process: stores an ``orchestrator run``'s events in the run store while the
run goes on, beside the run's own process (``python -m orchestrator.store.recorder``).

Why a process of its own: storing an event is Python work (its line parsed, its step's row
derived, SQLite's rows bound) that holds the GIL. In a thread of the run's process it waited
for the busy event loop to hand the GIL over, about 5 ms each time: a 10,000-step run's
batches grew to 16,000 events held in memory (a third of its peak RSS) and the store added
a quarter to its wall time. Here it runs on a core of its own, and a run's process only
writes each event's JSON line (made for the events file anyway) to a pipe.

The wire, all JSON lines:

- stdin: first a :class:`RecorderHeader` (the store's location, which may hold a password,
  travels here and never on the command line), then the run's events as
  :class:`~orchestrator.events.EventLog` wrote them, in order. End of input ends the run's
  recording, whether the run finished or its process died (``kill -9``): what arrived is
  stored, a torn last line is dropped.
- stdout: ``{"created": RUN_ID}`` once the run is in the store, then at the end
  ``{"stored": N}`` (events stored), or ``{"error": TEXT}`` (secrets masked) and exit
  status 1 as soon as it cannot go on (the store is unreachable, the disk is full, ...).

It starts in a session of its own, so a Ctrl-C at the terminal reaches only the run, which
then rolls back, and whose rollback events are stored too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import anyio
import orjson

from foundation.secrets import mask_text, url_secrets
from foundation.status import RunStatus
from orchestrator.events import EventRecord
from orchestrator.store._open import open_store
from orchestrator.store.base import RunRecord, RunStore

__all__ = ["PIPE_BYTES", "RecorderHeader", "main"]

#: The pipe's capacity asked for (Linux; 64 KiB otherwise): a batch can take what a busy
#: run wrote while the last one was being stored, not just 64 KiB of it.
PIPE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class RecorderHeader:
    """The first line on the recorder's stdin: where the store is and the run's row (created
    ``running``). A dataclass checked by hand, not a pydantic model: a short run waits for
    this process at its end, so it imports little (its start is ~0.1 s of that wait)."""

    store: str | None  # a URL or path (secret: never logged); None: the state dir's SQLite
    state_dir: Path
    timeout_s: float
    run: RunRecord

    def to_json(self) -> bytes:
        run = self.run
        return orjson.dumps(
            {
                "store": self.store,
                "state_dir": str(self.state_dir),
                "timeout_s": self.timeout_s,
                "run": {
                    "run_id": run.run_id,
                    "plan": run.plan,
                    "plan_source": run.plan_source,
                    "workdir": str(run.workdir),
                    "created_at": run.created_at.isoformat(),
                    "options": dict(run.options),
                },
            }
        )

    @classmethod
    def from_json(cls, line: bytes) -> RecorderHeader:
        """The header in ``line``; ValueError naming the field that is missing or wrong."""
        data = _object(orjson.loads(line), "the header")
        run = _object(data.get("run"), "run")
        store = data.get("store")
        if store is not None and not isinstance(store, str):
            raise ValueError("'store' must be a string or null")
        return cls(
            store=store,
            state_dir=Path(_field(data, "state_dir", str)),
            timeout_s=float(_field(data, "timeout_s", (int, float))),
            run=RunRecord(
                run_id=_field(run, "run_id", str),
                plan=_field(run, "plan", str),
                plan_source=_field(run, "plan_source", str),
                workdir=Path(_field(run, "workdir", str)),
                status=RunStatus.RUNNING,
                created_at=datetime.fromisoformat(_field(run, "created_at", str)),
                options=_object(run.get("options"), "run.options"),
            ),
        )


def _object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


def _field(data: dict[str, Any], name: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"'{name}' is missing or of the wrong type")
    return value


class _Inbox:
    """Complete lines read so far and not yet stored; a torn end waits for its rest."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.closed = False
        self.arrived = anyio.Event()
        self._rest = b""

    def feed(self, data: bytes) -> None:
        if not data:  # end of input: a line without its newline was torn by a crash
            self.closed = True
        else:
            lines = (self._rest + data).split(b"\n")
            self._rest = lines.pop()
            self.lines.extend(line for line in lines if line.strip())
        self.arrived.set()

    def take(self) -> list[bytes]:
        lines, self.lines = self.lines, []
        self.arrived = anyio.Event()
        return lines


async def _read(fd: int, inbox: _Inbox) -> None:
    """Move what the pipe holds into ``inbox`` until end of input (the run's process closed
    it, or died); no deadline: the run lasts as long as it lasts."""
    if stat.S_ISREG(os.fstat(fd).st_mode):  # a file (by hand: ``< events.jsonl``): no waiting
        while not inbox.closed:
            inbox.feed(os.read(fd, PIPE_BYTES))
        return
    os.set_blocking(fd, False)
    while not inbox.closed:
        await anyio.wait_readable(fd)
        while not inbox.closed:
            try:
                inbox.feed(os.read(fd, PIPE_BYTES))
            except BlockingIOError:
                break


async def _store_events(store: RunStore, run_id: str, inbox: _Inbox) -> int:
    """Store what arrives, a batch at a time (whatever came while the last was written)."""
    stored = 0
    while True:
        lines = inbox.take()
        if lines:
            stored += await store.append_events(run_id, [EventRecord.from_line(x) for x in lines])
        elif inbox.closed:
            return stored
        else:
            await inbox.arrived.wait()


async def _record(header: RecorderHeader, fd: int, rest: bytes, reply: IO[bytes]) -> None:
    run = header.run
    inbox = _Inbox()
    if rest:
        inbox.feed(rest)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_read, fd, inbox)  # the run goes on meanwhile: its events wait here
        async with AsyncExitStack() as stack:
            with anyio.fail_after(header.timeout_s):
                store = await stack.enter_async_context(
                    open_store(header.store, state_dir=header.state_dir, timeout_s=header.timeout_s)
                )
                await store.create_run(run)
            _reply(reply, created=run.run_id)
            stored = await _store_events(store, run.run_id, inbox)
    _reply(reply, stored=stored)


def _reply(out: IO[bytes], **fields: Any) -> None:
    out.write(orjson.dumps(fields) + b"\n")
    out.flush()


def main() -> int:
    """Record one run (see the module's text); the exit status is 0 once all is stored."""
    # Replies have stdout to themselves: anything else printed goes to stderr.
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError, AttributeError):  # Linux only; a smaller pipe will do
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    secrets: list[str] = []
    try:
        first, rest = _header_line(fd)
        with contextlib.suppress(ValueError, AttributeError):
            store = orjson.loads(first).get("store")
            if isinstance(store, str) and "://" in store:
                secrets = url_secrets(store)
        header = RecorderHeader.from_json(first)
        anyio.run(_record, header, fd, rest, reply)
    except Exception as exc:  # reported with secrets masked: never a traceback that shows them
        _reply(reply, error=mask_text(_describe(exc), secrets))
        return 1
    return 0


def _header_line(fd: int) -> tuple[bytes, bytes]:
    """The first line on ``fd`` and what was read after it (unbuffered: the rest is the
    events', read from the same descriptor)."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, PIPE_BYTES)
        if not chunk:
            break
        data += chunk
    first, _, rest = data.partition(b"\n")
    return first, rest


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "the run store did not answer in time"
    text = str(exc)
    return (
        text if type(exc).__module__.startswith("orchestrator") else f"{type(exc).__name__}: {text}"
    )


if __name__ == "__main__":
    sys.exit(main())
