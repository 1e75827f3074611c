"""The PostgreSQL run store: asyncpg, a small pool, every table in one schema of its own.

The store keeps its tables in a schema (default ``orchestrator``, created if missing) set as
the pool's ``search_path``, so it can share a database with other applications. Event
bodies are JSONB.

Every call runs under one deadline (``anyio.fail_after(timeout_s)``, and asyncpg's
``command_timeout`` as a second guard). A call that finds its connection gone (the server
restarted) is tried once more on a fresh connection within the same deadline; that is safe
because every write is idempotent. A server that stays away gives StoreUnavailable, and the
next call connects again.

Appending a batch is normally one statement (events, run, streams and steps together, so
one round trip and atomic by itself); only a batch that repeats stored events takes a
transaction that first finds which are new.

The DSN's password never appears in a message: ``where`` is the redacted DSN and every
driver message is scrubbed of it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import asyncpg
import orjson

from orchestrator.step_output import StepOutput
from orchestrator.store import _postgres_sql as sql
from orchestrator.store._derive import Derived, ParsedEvent, as_utc, derive, parse_events
from orchestrator.store._dsn import dsn_secrets, redact_dsn, scrub
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
from orchestrator.store.errors import StoreError, StoreUnavailable
from orchestrator.store.migrations import POSTGRES_MIGRATIONS, pending_migrations

__all__ = ["DEFAULT_SCHEMA", "PostgresStore"]

T = TypeVar("T")
if TYPE_CHECKING:  # generic only in the stubs
    from asyncpg.pool import PoolConnectionProxy

    Conn = PoolConnectionProxy[asyncpg.Record]

DEFAULT_SCHEMA = "orchestrator"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HEAD_KEYS = ("ts", "seq", "event", "run_id")

#: Failures after which a fresh connection may succeed.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

#: Everything asyncpg raises (its client-side errors do not share a base class).
_DRIVER_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
)


def _connection_lost(exc: BaseException) -> bool:
    """Whether a fresh connection may succeed where this one failed. A server that shut
    down under an idle pooled connection can also leave asyncpg's protocol confused (an
    InternalClientError) or the connection closed (an InterfaceError)."""
    return isinstance(exc, (*_CONNECTION_LOST, asyncpg.exceptions.InternalClientError)) or (
        isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)
    )


class PostgresStore:
    """A :class:`~orchestrator.store.RunStore` in PostgreSQL. Open with :meth:`open`."""

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        where: str,
        secrets: list[str],
        timeout_s: float,
    ) -> None:
        self._pool: asyncpg.Pool[asyncpg.Record] | None = pool
        self._where = where
        self._secrets = secrets
        self.timeout_s = timeout_s

    @property
    def where(self) -> str:
        return self._where

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        timeout_s: float = 10.0,
        pool_size: int = 4,
    ) -> PostgresStore:
        """Connect, create ``schema`` if missing and bring it up to date.

        Raises StoreError for a bad DSN, refused credentials, a missing database, missing
        rights or a schema newer than this code; StoreUnavailable if the server cannot be
        reached within ``timeout_s``.
        """
        where = f"{redact_dsn(dsn)} (schema {schema})"
        secrets = dsn_secrets(dsn)
        if not _SCHEMA_NAME.match(schema):
            raise StoreError(
                where,
                f"invalid schema name {schema!r}",
                "use lower-case letters, digits and '_', starting with a letter or '_'",
            )
        try:
            with anyio.fail_after(timeout_s):
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=1,
                    max_size=pool_size,
                    timeout=timeout_s,
                    command_timeout=timeout_s,
                    server_settings={"search_path": schema, "application_name": "orchestrator"},
                )
        except TimeoutError:
            raise _timed_out(where, timeout_s) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError) as exc:
            raise _translate(where, secrets, exc) from None
        store = cls(pool, where=where, secrets=secrets, timeout_s=timeout_s)
        try:
            await store._run(lambda conn: _migrate(conn, where, schema), write=True)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.aclose()
            raise
        return store

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        with anyio.move_on_after(self.timeout_s, shield=True) as scope:
            await pool.close()
        if scope.cancelled_caught:
            pool.terminate()

    # -- the calls -------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> None:
        check_status(run.status)

        async def create(conn: Conn) -> None:
            inserted = await conn.fetchval(
                sql.CREATE_RUN,
                run.run_id,
                run.plan,
                _text(run.plan_source),
                None if run.plan_path is None else str(run.plan_path),
                str(run.workdir),
                run.status,
                _text(run.reason),
                as_utc(run.created_at),
                None if run.started_at is None else as_utc(run.started_at),
                None if run.finished_at is None else as_utc(run.finished_at),
                _jsonb(orjson.dumps(dict(run.options), default=str).decode()),
                run.last_seq,
            )
            if inserted:
                return
            row = await conn.fetchrow(
                "SELECT plan, plan_source FROM runs WHERE run_id = $1", run.run_id
            )
            if row is None or (row[0], row[1]) != (run.plan, _text(run.plan_source)):
                raise StoreError(
                    self._where,
                    f"a different run {run.run_id!r} already exists",
                    "give the new run another run id",
                )

        await self._run(create, write=True)

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        parsed = parse_events(self._where, run_id, events)
        if not parsed:
            return 0

        async def append(conn: Conn) -> int:
            try:
                try:
                    return await _append(conn, run_id, parsed)
                except asyncpg.UniqueViolationError as exc:
                    if exc.constraint_name != "events_pkey":
                        raise
                # A replay: find the new events and append only those.
                async with conn.transaction():
                    stored = await conn.fetch(
                        "SELECT seq FROM events WHERE run_id = $1 AND seq = ANY($2::bigint[])",
                        run_id,
                        [e.seq for e in parsed],
                    )
                    seen = {row[0] for row in stored}
                    new = [e for e in parsed if e.seq not in seen]
                    return await _append(conn, run_id, new) if new else 0
            except asyncpg.ForeignKeyViolationError:
                raise _unknown_run(self._where, run_id) from None

        return await self._run(append, write=True)

    async def set_run_status(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str = "",
        expect: Collection[RunStatus] | None = None,
    ) -> bool:
        check_status(status)
        expected = None if expect is None else [check_status(s) for s in expect]

        async def update(conn: Conn) -> bool:
            result = await conn.execute(
                sql.SET_STATUS,
                run_id,
                status,
                _text(reason),
                status == "running",
                status in FINISHED_STATUSES,
                status in UNFINISHED_STATUSES,
                utc_now(),
                expected,
            )
            if result != "UPDATE 0":
                return True
            if await conn.fetchval("SELECT true FROM runs WHERE run_id = $1", run_id) is None:
                raise _unknown_run(self._where, run_id)
            return False

        return await self._run(update, write=True)

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._run(lambda conn: conn.fetch(sql.GET_RUN, run_id))
        return run_record(rows[0], _as_is) if rows else None

    async def list_runs(
        self,
        *,
        limit: int = 50,
        statuses: Collection[RunStatus] | None = None,
        plan: str | None = None,
        since: datetime | None = None,
    ) -> list[RunRecord]:
        wanted = None if statuses is None else [check_status(s) for s in statuses]
        after = None if since is None else as_utc(since)
        rows = await self._run(
            lambda conn: conn.fetch(sql.LIST_RUNS, wanted, plan, after, max(0, limit))
        )
        return [run_record(row, _as_is) for row in rows]

    async def unfinished_runs(self) -> list[RunRecord]:
        unfinished = list(UNFINISHED_STATUSES)
        rows = await self._run(
            lambda conn: conn.fetch(sql.UNFINISHED_RUNS, unfinished, IN_PROCESS_ORIGIN)
        )
        return [run_record(row, _as_is) for row in rows]

    async def get_streams(self, run_id: str) -> list[StreamRecord]:
        rows = await self._run(lambda conn: conn.fetch(sql.STREAMS, run_id))
        return [stream_record(r, _as_is) for r in rows]

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        rows = await self._run(lambda conn: conn.fetch(sql.STEPS, run_id))
        return [step_record(r, _as_is) for r in rows]

    async def read_events(
        self, run_id: str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[dict[str, Any]]:
        rows = await self._run(
            lambda conn: conn.fetch(sql.READ_EVENTS, run_id, after_seq, max(0, limit))
        )
        return [_event_dict(orjson.loads(row[0])) for row in rows]

    async def lock_fences(self) -> dict[str, int]:
        rows = await self._run(lambda conn: conn.fetch(sql.LOCK_FENCES))
        return {str(r[0]): int(r[1]) for r in rows}

    async def step_outputs(
        self, run_id: str, *, stream: str | None = None, step: str | None = None
    ) -> list[StepOutput]:
        rows = await self._run(lambda conn: conn.fetch(sql.STEP_FINISHED, run_id))
        return select_outputs((orjson.loads(r[0]) for r in rows), stream, step)

    async def stream_history(
        self, signatures: Collection[str], *, limit: int = 1000
    ) -> dict[str, list[HistoryRecord]]:
        wanted = sorted(set(signatures))
        found: dict[str, list[HistoryRecord]] = {sig: [] for sig in wanted}
        if not wanted or limit <= 0:
            return found
        rows = await self._run(lambda conn: conn.fetch(sql.HISTORY, wanted, limit))
        for r in rows:
            found[r[0]].append(history_record(r, _as_is))
        return found

    # -- the one way to the server ---------------------------------------------------------

    async def _run(self, op: Callable[[Conn], Awaitable[T]], *, write: bool = False) -> T:
        """``op`` on a pooled connection within ``timeout_s``; once more on a fresh one if the
        connection was lost; every failure becomes a StoreError.

        A write is shielded from cancellation (not from its deadline): cancelling a statement
        in flight leaves its outcome unknown until the server gets round to it, so the call
        finishes first and the cancellation takes effect right after it.
        """
        pool = self._pool
        if pool is None:
            raise StoreError(self._where, "the store is closed", "open it again")
        try:
            with anyio.fail_after(self.timeout_s, shield=write):
                for attempt in (1, 2):
                    try:
                        async with pool.acquire() as conn:
                            return await op(conn)
                    except _DRIVER_ERRORS as exc:
                        if attempt == 2 or not _connection_lost(exc):
                            raise
                raise AssertionError("unreachable")  # pragma: no cover
        except TimeoutError:
            raise _timed_out(self._where, self.timeout_s) from None
        except _DRIVER_ERRORS as exc:
            raise _translate(self._where, self._secrets, exc) from None


# -- statements ------------------------------------------------------------------------------


async def _migrate(conn: Conn, where: str, schema: str) -> None:
    async with conn.transaction():
        # Two daemons opening one database at once must not both migrate it.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"orchestrator:{schema}")
        exists = await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        for migration in pending_migrations(where, int(current), POSTGRES_MIGRATIONS):
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )


async def _append(conn: Conn, run_id: str, events: Sequence[ParsedEvent]) -> int:
    derived: Derived = derive(events)
    run = derived.run
    streams, steps, history = derived.streams, derived.steps, derived.history
    count = await conn.fetchval(
        sql.APPEND,
        run_id,
        [e.seq for e in events],
        [e.ts for e in events],
        [e.event for e in events],
        [_jsonb(e.json) for e in events],
        events[-1].seq,
        None if run is None else run.status,
        None if run is None else run.started_at,
        None if run is None else run.finished_at,
        False if run is None else run.clear_finished,
        [s.stream for s in streams],
        [s.position for s in streams],
        [s.status for s in streams],
        [_text_or_none(s.reason) for s in streams],
        [s.started_at for s in streams],
        [s.finished_at for s in streams],
        [s.seq for s in streams],
        [s.stream for s in steps],
        [s.step for s in steps],
        [s.status for s in steps],
        [s.attempt for s in steps],
        [s.agent for s in steps],
        [s.resource_class for s in steps],
        [s.started_at for s in steps],
        [s.finished_at for s in steps],
        [s.duration_s for s in steps],
        [_text_or_none(s.reason) for s in steps],
        [s.exit_code for s in steps],
        [s.first_seq for s in steps],
        [s.seq for s in steps],
        [_text_or_none(s.signature) for s in streams],
        [_text_or_none(s.methodology) for s in streams],
        [h.stream for h in history],
        [h.status for h in history],
        [h.finished_at for h in history],
        [h.gate_confidence for h in history],
        [h.started_at for h in history],
        [_text_or_none(h.signature) for h in history],
        [_text_or_none(h.methodology) for h in history],
        [h.service_s for h in history],
        [h.queued_s for h in history],
        list(derived.fences),
        list(derived.fences.values()),
    )
    return int(count)


# -- values ----------------------------------------------------------------------------------


def _text(value: str) -> str:
    """PostgreSQL text cannot hold NUL; a NUL in a reason or output becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _text_or_none(value: str | None) -> str | None:
    return None if value is None else _text(value)


_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _jsonb(text: str) -> str:
    """JSONB refuses the escape ``\\u0000``; it becomes ``\\ufffd`` (escaped backslashes kept)."""
    return _JSON_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _event_dict(body: dict[str, Any]) -> dict[str, Any]:
    """JSONB orders keys its own way; put ``ts, seq, event, run_id`` first again."""
    head = {k: body.pop(k) for k in _HEAD_KEYS if k in body}
    head.update(body)
    return head


def _as_is(value: datetime | None) -> datetime | None:
    return value  # asyncpg already gives timezone-aware datetimes (or None)


# -- errors ----------------------------------------------------------------------------------


def _unknown_run(where: str, run_id: str) -> StoreError:
    return StoreError(where, f"no run {run_id!r}", "check the run id; a run is created first")


def _timed_out(where: str, timeout_s: float) -> StoreUnavailable:
    return StoreUnavailable(
        where,
        f"no answer within {timeout_s:g}s",
        "check that PostgreSQL runs at this host and port and is not overloaded",
    )


def _translate(where: str, secrets: list[str], exc: BaseException) -> StoreError:
    """A driver failure as a StoreError naming the fix; the DSN's secrets scrubbed."""
    text = scrub(str(exc) or type(exc).__name__, secrets)
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return StoreError(
            where,
            "password authentication failed",
            "check the user and password in the DSN (postgresql://USER:PASSWORD@host/db)",
        )
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return StoreError(
            where, f"the server refused the login: {text}", "check the DSN's user, and pg_hba"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(
            where, f"no such database: {text}", "create it (createdb NAME) or fix the DSN"
        )
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return StoreError(
            where,
            f"not allowed: {text}",
            "grant the DSN's user CREATE on the database, or create the schema for it",
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        return StoreUnavailable(where, f"the server cancelled the statement: {text}")
    if _connection_lost(exc):
        return StoreUnavailable(
            where,
            f"cannot reach the server or lost the connection: {text}",
            "check that PostgreSQL runs at this host and port; the next call connects again",
        )
    if isinstance(exc, ValueError | asyncpg.InterfaceError):
        return StoreError(where, f"invalid DSN or option: {text}", "fix the DSN")
    return StoreError(where, f"PostgreSQL failed: {text}")
