"""The SQLite run store: one file (default ``<state_dir>/runs.sqlite3``), no server.

One ``sqlite3`` connection, used by one worker thread at a time: every call waits its turn
at a capacity-1 limiter (under the call's deadline), then runs in a thread under the same
deadline, which SQLite itself enforces: a progress handler interrupts a statement past it,
and ``busy_timeout`` bounds the wait for another process's write lock. So the thread is
never abandoned holding the connection, and no await outlives its deadline by more than
one fsync.

Durability: WAL mode, ``synchronous=NORMAL`` for progress (a commit survives the daemon
crashing, but an OS crash or power loss may lose the last such commits; the file stays
consistent), and ``synchronous=FULL`` (fsync before the commit returns) for the commits a
restarted daemon decides on: a run's creation, a status set by the daemon, and any batch
holding ``run_started`` or ``run_finished`` -- so a finished run is never run again and
an accepted run is never lost. A FULL commit also makes every earlier commit durable.
Measured here: about 10 us per NORMAL commit against 0.3 to 4 ms per FULL one (the VM's
disk varies), so FULL for every event would make the store the slowest part of a run.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson

from orchestrator.step_output import StepOutput
from orchestrator.store import _sqlite_sql as sql
from orchestrator.store._derive import (
    Derived,
    HistoryPatch,
    ParsedEvent,
    derive,
    iso,
    parse_events,
    parse_ts,
)
from orchestrator.store._records import (
    history_record,
    run_record,
    select_outputs,
    step_record,
    stream_record,
)
from orchestrator.store.base import (
    FINISHED_STATUSES,
    IN_PROCESS_ORIGIN,
    UNFINISHED_STATUSES,
    HistoryRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StreamRecord,
    check_status,
    utc_now,
)
from orchestrator.store.errors import DiskFull, StoreError, StoreUnavailable
from orchestrator.store.migrations import SQLITE_MIGRATIONS, Migration, pending_migrations

__all__ = ["SqliteStore"]

T = TypeVar("T")

#: How often (in SQLite VM instructions) the deadline is checked during a statement.
_PROGRESS_EVERY = 10_000
_LIFECYCLE_EVENTS = frozenset({"run_started", "run_finished"})


class SqliteStore:
    """A :class:`~orchestrator.store.RunStore` in one SQLite file. Open with :meth:`open`."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        timeout_s: float,
        fsync_every_commit: bool = False,
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.fsync_every_commit = fsync_every_commit
        self._conn: sqlite3.Connection | None = conn
        self._turn = anyio.CapacityLimiter(1)
        self._deadline = 0.0
        self._durable = False
        conn.set_progress_handler(self._past_deadline, _PROGRESS_EVERY)

    @property
    def where(self) -> str:
        return str(self.path)

    @classmethod
    async def open(
        cls, path: Path, *, timeout_s: float = 10.0, fsync_every_commit: bool = False
    ) -> SqliteStore:
        """Open (creating) the file and bring its schema up to date. With
        ``fsync_every_commit`` progress commits are FULL too (an fsync each, see above).

        Raises StoreError if the file cannot be opened, is not a database, or has a schema
        newer than this code; StoreUnavailable if another process holds it past the deadline.
        """
        where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                where, f"cannot create its directory: {exc.strerror}", "check permissions"
            ) from None
        # Bounded by SQLite's busy timeout (timeout_s); a thread is never abandoned.
        conn = await anyio.to_thread.run_sync(functools.partial(_connect, path, timeout_s))
        store = cls(path, conn, timeout_s=timeout_s, fsync_every_commit=fsync_every_commit)
        try:
            await store._call(_migrate, where)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.aclose()
            raise
        return store

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with anyio.CancelScope(shield=True):
            async with self._turn:  # let a running call finish with the connection
                await anyio.to_thread.run_sync(conn.close)

    # -- the calls -------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        check_status(run.status)
        await self._call(_create_run, self.where, run, durable=True)

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        parsed = parse_events(self.where, run_id, events)
        if not parsed:
            return 0
        durable = any(e.event in _LIFECYCLE_EVENTS for e in parsed)
        return await self._call(_append, self.where, run_id, parsed, durable=durable)

    async def set_run_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str = "",
        expect: Collection[RunStatus] | None = None,
    ) -> bool:
        check_status(status)
        return await self._call(
            _set_status, self.where, run_id, status, reason, expect, durable=True
        )

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._call(_query, sql.GET_RUN, (run_id,))
        return run_record(rows[0], _ts) if rows else None

    async def list_runs(
        self,
        *,
        limit: int = 50,
        statuses: Collection[RunStatus] | None = None,
        plan: str | None = None,
        since: datetime | None = None,
    ) -> list[RunRecord]:
        where: list[str] = []
        args: list[str | int] = []
        if statuses is not None:
            wanted = [check_status(s) for s in statuses]
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if plan is not None:
            where.append("plan = ?")
            args.append(plan)
        if since is not None:
            where.append(f"{sql.RUN_CREATED} >= ?")
            args.append(iso(since))
        query = sql.LIST_RUNS + (f" WHERE {' AND '.join(where)}" if where else "")
        query += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        rows = await self._call(_query, query, (*args, max(0, limit)))
        return [run_record(row, _ts) for row in rows]

    async def unfinished_runs(self) -> list[RunRecord]:
        marks = ", ".join("?" * len(UNFINISHED_STATUSES))
        query = (
            f"{sql.LIST_RUNS} WHERE status IN ({marks}) AND {sql.NOT_IN_PROCESS} "
            "ORDER BY created_at, run_id"
        )
        rows = await self._call(_query, query, (*UNFINISHED_STATUSES, IN_PROCESS_ORIGIN))
        return [run_record(row, _ts) for row in rows]

    async def get_streams(self, run_id: str) -> list[StreamRecord]:
        rows = await self._call(_query, sql.STREAMS, (run_id,))
        return [stream_record(r, _ts) for r in rows]

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._call(_query, sql.STEPS, (run_id,))
        return [step_record(r, _ts) for r in rows]

    async def read_events(
        self, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        rows = await self._call(_query, sql.READ_EVENTS, (run_id, after_seq, max(0, limit)))
        return [orjson.loads(row[0]) for row in rows]

    async def step_outputs(
        self, run_id: str, *, stream: str | None = None, step: str | None = None
    ) -> list[StepOutput]:
        rows = await self._call(_query, sql.STEP_FINISHED, (run_id,))
        return select_outputs((orjson.loads(r[0]) for r in rows), stream, step)

    async def stream_history(
        self, signatures: Collection[str], *, limit: int = 1000
    ) -> dict[str, list[HistoryRecord]]:
        wanted = sorted(set(signatures))
        found: dict[str, list[HistoryRecord]] = {sig: [] for sig in wanted}
        if not wanted or limit <= 0:
            return found
        # SQLite binds at most 32766 variables per statement; plans have far fewer streams.
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            query = sql.history_query(len(chunk))
            rows = await self._call(_query, query, (*chunk, limit))
            for r in rows:
                found[r[0]].append(history_record(r, _ts))
        return found

    async def lock_fences(self) -> dict[str, int]:
        rows = await self._call(_query, sql.LOCK_FENCES, ())
        return {str(r[0]): int(r[1]) for r in rows}

    # -- the one way into the connection -----------------------------------------------------

    async def _call(self, func: Callable[..., T], *args: Any, durable: bool = False) -> T:
        """Run ``func(conn, *args)`` in a worker thread, alone on the connection, within
        ``timeout_s``; translate SQLite's errors into StoreError."""
        deadline = time.monotonic() + self.timeout_s
        try:
            with anyio.fail_after(self.timeout_s):
                await self._turn.acquire()
        except TimeoutError:
            raise StoreUnavailable(
                self.where,
                f"still busy with earlier calls after {self.timeout_s:g}s",
                "the disk may be stalled; check it, or raise the store timeout",
            ) from None
        try:
            # Not abandoned on cancellation: the thread's deadline ends it soon enough.
            return await anyio.to_thread.run_sync(
                functools.partial(self._in_thread, func, args, deadline, durable)
            )
        finally:
            self._turn.release()

    def _in_thread(
        self, func: Callable[..., T], args: tuple[Any, ...], deadline: float, durable: bool
    ) -> T:
        conn = self._conn
        if conn is None:
            raise StoreError(self.where, "the store is closed", "open it again")
        self._deadline = deadline
        durable = durable or self.fsync_every_commit
        try:
            if durable is not self._durable:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            return func(conn, *args)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise self._translate(exc) from None
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise

    def _past_deadline(self) -> int:
        return 1 if time.monotonic() > self._deadline else 0

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "interrupted" in text:
            return StoreUnavailable(
                self.where,
                f"a statement ran past the {self.timeout_s:g}s deadline",
                "the disk may be stalled; check it, or raise the store timeout",
            )
        if isinstance(exc, sqlite3.OperationalError) and "full" in text:
            return DiskFull(
                self.where,
                f"SQLite could not write: {text}",
                f"free space on the file system of {self.where}; writing resumes by itself",
            )
        if "locked" in text or "busy" in text:
            return StoreUnavailable(
                self.where,
                f"another process held the database locked for {self.timeout_s:g}s",
                "stop the other process using this file, or give this daemon its own store",
            )
        return StoreError(
            self.where, f"SQLite failed: {text}", "check the file and its disk (space, rights)"
        )


# -- what runs in the worker thread ----------------------------------------------------------


def _connect(path: Path, timeout_s: float) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(
            str(path), f"cannot open: {exc}", "check the path and its rights"
        ) from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise StoreError(
                str(path),
                f"cannot use write-ahead logging (journal mode {mode and mode[0]!r})",
                "put the store on a local file system",
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(
            str(path),
            f"not a usable SQLite database: {exc}",
            "point the store at another file, or move this one away",
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, where: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    todo: Iterable[Migration] = pending_migrations(where, int(row[0]), SQLITE_MIGRATIONS)
    for migration in todo:
        for statement in migration.statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, iso(utc_now())),
        )
    conn.execute("COMMIT")


def _create_run(conn: sqlite3.Connection, where: str, run: RunRecord) -> None:
    values = (
        run.run_id,
        run.plan,
        run.plan_source,
        None if run.plan_path is None else str(run.plan_path),
        str(run.workdir),
        run.status,
        run.reason,
        iso(run.created_at),
        _iso_or_none(run.started_at),
        _iso_or_none(run.finished_at),
        orjson.dumps(dict(run.options), default=str).decode(),
        run.last_seq,
    )
    conn.execute("BEGIN IMMEDIATE")
    cursor = conn.execute(
        f"INSERT INTO runs ({sql.RUN_COLUMNS}) VALUES ({', '.join('?' * len(values))}) "
        "ON CONFLICT (run_id) DO NOTHING",
        values,
    )
    if cursor.rowcount == 0:
        row = conn.execute(
            "SELECT plan, plan_source FROM runs WHERE run_id = ?", (run.run_id,)
        ).fetchone()
        if row is None or (row[0], row[1]) != (run.plan, run.plan_source):
            conn.execute("ROLLBACK")
            raise _exists(where, run.run_id)
    conn.execute("COMMIT")


def _exists(where: str, run_id: str) -> StoreError:
    return StoreError(
        where, f"a different run {run_id!r} already exists", "give the new run another run id"
    )


def _append(
    conn: sqlite3.Connection, where: str, run_id: str, events: Sequence[ParsedEvent]
) -> int:
    conn.execute("BEGIN IMMEDIATE")
    known = conn.execute(
        "UPDATE runs SET last_seq = max(last_seq, ?) WHERE run_id = ?", (events[-1].seq, run_id)
    )
    if known.rowcount == 0:
        conn.execute("ROLLBACK")
        raise _unknown_run(where, run_id)
    # Under the write lock, so nothing can come between: the batch's seqs already stored (a
    # replay after a lost reply) are left out, and the rest go in many rows a statement.
    stored = {
        row[0] for row in conn.execute(sql.STORED_SEQS, (run_id, events[0].seq, events[-1].seq))
    }
    new = [ev for ev in events if ev.seq not in stored] if stored else events
    if new:
        # Each event time's text, made once: the patches' times are the events' times.
        texts = {ev.ts: ev.ts_text for ev in new}
        rows = [(ev.seq, texts[ev.ts], ev.event, ev.json) for ev in new]
        _insert_rows(conn, sql.INSERT_EVENTS, run_id, rows)
        _apply(conn, run_id, derive(new), texts)
    conn.execute("COMMIT")
    return len(new)


def _apply(
    conn: sqlite3.Connection, run_id: str, derived: Derived, texts: Mapping[datetime, str]
) -> None:
    def text(value: datetime | None) -> str | None:
        return None if value is None else texts.get(value) or iso(value)

    run = derived.run
    if run is not None:
        conn.execute(
            sql.PATCH_RUN,
            {
                "run_id": run_id,
                "seq": run.seq,
                "status": run.status,
                "started_at": text(run.started_at),
                "finished_at": text(run.finished_at),
                "clear": run.clear_finished,
            },
        )
    if derived.streams:
        conn.executemany(
            sql.UPSERT_STREAM,
            [
                (
                    run_id,
                    s.stream,
                    s.position,
                    s.status,
                    s.reason,
                    text(s.started_at),
                    text(s.finished_at),
                    s.seq,
                    s.signature,
                    s.methodology,
                )
                for s in derived.streams
            ],
        )
    for history in derived.history:  # after the streams: a start stored earlier is there
        _add_history(conn, run_id, history)
    if derived.steps:
        _insert_rows(
            conn,
            sql.UPSERT_STEPS,
            run_id,
            [
                (
                    s.stream,
                    s.step,
                    s.status,
                    s.attempt,
                    s.agent,
                    s.resource_class,
                    text(s.started_at),
                    text(s.finished_at),
                    s.duration_s,
                    s.reason,
                    s.exit_code,
                    s.first_seq,
                    s.seq,
                )
                for s in derived.steps
            ],
        )
    if derived.fences:
        conn.executemany(sql.UPSERT_FENCE, list(derived.fences.items()))


def _add_history(conn: sqlite3.Connection, run_id: str, patch: HistoryPatch) -> None:
    started_at, signature, methodology = patch.started_at, patch.signature, patch.methodology
    if started_at is None:
        row = conn.execute(sql.STREAM_START, (run_id, patch.stream)).fetchone()
        if row is not None:
            started_at, signature, methodology = _ts(row[0]), row[1], row[2]
    if signature is None:
        return
    conn.execute(
        sql.INSERT_HISTORY,
        (
            patch.stream,
            signature,
            methodology,
            patch.status,
            patch.duration_s(started_at),
            patch.gate_confidence,
            iso(patch.finished_at),
            patch.service_s,
            patch.queued_s,
            run_id,
        ),
    )


def _set_status(
    conn: sqlite3.Connection,
    where: str,
    run_id: str,
    status: RunStatus,
    reason: str,
    expect: Collection[RunStatus] | None,
) -> bool:
    now = iso(utc_now())
    query = sql.SET_STATUS
    args: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "running": status == "running",
        "finished": status in FINISHED_STATUSES,
        "unfinished": status in UNFINISHED_STATUSES,
        "now": now,
        "run_id": run_id,
    }
    if expect is not None:
        names = [f"e{i}" for i in range(len(expect))]
        args.update(zip(names, (check_status(s) for s in expect), strict=True))
        query += f" AND status IN ({', '.join(':' + n for n in names)})" if names else " AND 0"
    conn.execute("BEGIN IMMEDIATE")
    changed = conn.execute(query, args).rowcount > 0
    if (
        not changed
        and conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None
    ):
        conn.execute("ROLLBACK")
        raise _unknown_run(where, run_id)
    conn.execute("COMMIT")
    return changed


def _unknown_run(where: str, run_id: str) -> StoreError:
    return StoreError(where, f"no run {run_id!r}", "check the run id; a run is created first")


def _query(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(sql, args).fetchall()


# -- rows to records -------------------------------------------------------------------------


def _insert_rows(
    conn: sqlite3.Connection, insert: sql.Rows, run_id: str, rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` (each after ``run_id``) by many rows a statement (see
    :class:`~orchestrator.store._sqlite_sql.Rows`)."""
    start = 0
    for count in insert.counts(len(rows)):
        values = [v for row in rows[start : start + count] for v in (run_id, *row)]
        conn.execute(insert.statement(count), values)
        start += count


def _iso_or_none(value: Any) -> str | None:
    return None if value is None else iso(value)


def _ts(value: str | None) -> datetime | None:
    return None if value is None else parse_ts(value)
