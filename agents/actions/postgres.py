"""PostgreSQL actions: ``postgres.timed_query``, ``.explain``, ``.pool_stats``,
``.stat_statements`` and ``.execute``.

asyncpg (asyncio backend only). Each action opens a connection (or a small pool) of its own
and closes it; every await is under ``anyio.fail_after(timeout_s)``, with asyncpg's
``command_timeout`` as a second guard. The password (from the DSN, ``password``, or the step
environment's variable named by ``password_env``) never reaches a summary, evidence, output
or error; ``PASSWORD '...'`` literals in SQL are masked too. Server errors, refused logins
and timeouts are ``ok=False`` results saying why; a missing variable raises
:class:`~foundation.errors.ActionFailed`.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agents.actions._stats import percentile
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import url_password, without_credentials
from streams.durations import Duration

if TYPE_CHECKING:  # imported where used: validating a plan must not pay for the driver
    import asyncpg

__all__ = [
    "ExecuteParams",
    "ExplainParams",
    "PoolStatsParams",
    "PostgresConnectionParams",
    "StatStatementsParams",
    "TimedQueryParams",
    "register",
    "run_execute",
    "run_explain",
    "run_pool_stats",
    "run_stat_statements",
    "run_timed_query",
]

T = TypeVar("T")

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_METRIC_PREFIX = r"^[A-Za-z_][A-Za-z0-9_.\-]*$"
_MASK = "***"
_PASSWORD_LITERAL = re.compile(r"(PASSWORD\s+)(E?'(?:[^']|'')*')", re.IGNORECASE)
_EXCERPT = 8192


def _failures() -> tuple[type[BaseException], ...]:
    """What a call to the server may raise (an ``except`` evaluates it only on an error)."""
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


#: A query argument as a plan can write it.
Arg = str | int | float | bool | None


class PostgresConnectionParams(BaseModel):
    """Where to connect: ``dsn`` (``postgresql://user[:password]@host:port/db``) and at most
    one of ``password`` / ``password_env`` (which override the DSN's password). ``timeout_s``
    bounds the connect and each statement."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dsn: str = Field(max_length=2048)
    password: SecretStr | None = None
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    timeout_s: Duration = Field(default=30.0, gt=0, le=3600)

    @field_validator("dsn")
    @classmethod
    def _postgres_dsn(cls, dsn: str) -> str:
        # Messages here never repeat the DSN: it may carry a password.
        try:
            parts = urlsplit(dsn)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError("not a valid DSN (write postgresql://user@host:5432/db)") from None
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError("needs a postgresql:// DSN with a host")
        return dsn

    @model_validator(mode="after")
    def _one_password_source(self) -> PostgresConnectionParams:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self


class TimedQueryParams(PostgresConnectionParams):
    """``postgres.timed_query``: run ``query`` ``warmup`` times unmeasured, then ``runs``
    times measured (client-side, round trip included). ``read_only`` refuses writes."""

    query: str = Field(min_length=1, max_length=100_000)
    args: list[Arg] = Field(default_factory=list, max_length=100)
    runs: int = Field(default=20, ge=1, le=10_000)
    warmup: int = Field(default=3, ge=0, le=1000)
    read_only: bool = True
    metric_prefix: str = Field(default="db.response_ms", pattern=_METRIC_PREFIX, max_length=100)


class ExplainParams(PostgresConnectionParams):
    """``postgres.explain``: EXPLAIN (ANALYZE, BUFFERS) ``query`` inside a transaction that is
    rolled back (so explaining a write changes nothing). ``expect_in_plan``: strings the plan
    must contain (``Index Scan``) for the step to pass."""

    query: str = Field(min_length=1, max_length=100_000)
    args: list[Arg] = Field(default_factory=list, max_length=100)
    analyze: bool = True
    buffers: bool = True
    expect_in_plan: list[str] = Field(default_factory=list, max_length=20)
    metric_prefix: str = Field(default="db.explain", pattern=_METRIC_PREFIX, max_length=100)


class PoolStatsParams(PostgresConnectionParams):
    """``postgres.pool_stats``: ``queries`` runs of ``query`` by ``concurrency`` workers
    sharing a pool of ``min_size``..``max_size`` connections."""

    min_size: int = Field(default=1, ge=0, le=50)
    max_size: int = Field(default=5, ge=1, le=50)
    concurrency: int = Field(default=10, ge=1, le=200)
    queries: int = Field(default=50, ge=1, le=10_000)
    query: str = Field(default="SELECT 1", min_length=1, max_length=100_000)
    metric_prefix: str = Field(default="db.pool", pattern=_METRIC_PREFIX, max_length=100)

    @model_validator(mode="after")
    def _sizes(self) -> PoolStatsParams:
        if self.min_size > self.max_size:
            raise ValueError("min_size cannot exceed max_size")
        return self


class StatStatementsParams(PostgresConnectionParams):
    """``postgres.stat_statements``: the ``top`` statements of the current database by
    ``order_by``. Without the extension the step passes with evidence saying so, unless
    ``require`` is true."""

    top: int = Field(default=10, ge=1, le=100)
    order_by: Literal["total_exec_time", "mean_exec_time", "calls", "rows"] = "total_exec_time"
    require: bool = False
    metric_prefix: str = Field(default="db.stat_statements", pattern=_METRIC_PREFIX)


class ExecuteParams(PostgresConnectionParams):
    """``postgres.execute``: run ``sql`` (outside a transaction block, so ``CREATE INDEX
    CONCURRENTLY`` works); ``undo_sql`` becomes the undo record."""

    sql: str = Field(min_length=1, max_length=100_000)
    args: list[Arg] = Field(default_factory=list, max_length=100)
    undo_sql: str | None = Field(default=None, min_length=1, max_length=100_000)


@dataclass(frozen=True, slots=True)
class _Target:
    """A resolved connection: ``dsn`` without its password, ``shown`` redacted for humans,
    and where the password came from (``dsn``, ``param``, ``env:NAME`` or ``none``)."""

    dsn: str
    shown: str
    password: str | None
    source: str


def _target(ctx: ActionContext, params: PostgresConnectionParams, action: str) -> _Target:
    parts = urlsplit(params.dsn)
    dsn_password = url_password(params.dsn)
    host = parts.netloc.rpartition("@")[2]
    bare = without_credentials(params.dsn, keep_user=True)
    if params.password_env is not None:
        try:
            password: str | None = ctx.env[params.password_env]
        except KeyError:
            raise ActionFailed(
                action,
                f"password_env {params.password_env!r} is not set in the step's environment "
                "(fix: export it where the daemon runs and list it in the daemon's pass_env "
                "setting, ORCH_PASS_ENV)",
                retryable=False,  # the environment will not change before a retry
            ) from None
        source = f"env:{params.password_env}"
    elif params.password is not None:
        password, source = params.password.get_secret_value(), "param"
    else:
        password, source = dsn_password, "dsn" if dsn_password else "none"
    shown = bare
    if password:
        userinfo = f"{parts.username or ''}:{_MASK}@"
        shown = urlunsplit((parts.scheme, userinfo + host, *urlsplit(bare)[2:]))
    return _Target(bare, shown, password, source)


@asynccontextmanager
async def _connection(target: _Target, timeout_s: float) -> AsyncIterator[asyncpg.Connection]:
    import asyncpg

    with anyio.fail_after(timeout_s):
        conn = await asyncpg.connect(
            target.dsn,
            password=target.password,
            timeout=timeout_s,
            command_timeout=timeout_s,
            server_settings={"application_name": "orchestrator"},
        )
    try:
        yield conn
    finally:
        with anyio.move_on_after(timeout_s, shield=True):  # cleanup survives cancellation
            await conn.close(timeout=timeout_s)
        if not conn.is_closed():
            conn.terminate()


async def _wait(timeout_s: float, awaitable: Awaitable[T]) -> T:
    with anyio.fail_after(timeout_s):
        return await awaitable


def _mask_sql(sql: str, target: _Target) -> str:
    masked = _PASSWORD_LITERAL.sub(rf"\g<1>'{_MASK}'", sql)
    if target.password and len(target.password) >= 3:
        masked = masked.replace(target.password, _MASK)
    return masked


def _reason(exc: BaseException, target: _Target, timeout_s: float) -> str:
    """Why a call failed, in words a user can act on, with no secret in it."""
    import asyncpg

    text = str(exc)
    if target.password and len(target.password) >= 3:
        text = text.replace(target.password, _MASK)
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return f"login refused: {text} (fix: check the password from {target.source})"
    if isinstance(exc, asyncpg.PostgresError):
        hint = getattr(exc, "hint", None)
        return f"{exc.sqlstate} {text}" + (f" (hint: {hint})" if hint else "")
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, OSError):
        return f"cannot connect: {text or type(exc).__name__}"
    return f"{type(exc).__name__}: {text}"


def _failed(target: _Target, what: str, exc: BaseException, timeout_s: float) -> ActionResult:
    reason = _reason(exc, target, timeout_s)
    return ActionResult(
        ok=False,
        summary=f"{what} on {target.shown} failed: {reason}",
        details={"dsn": target.shown},
    )


def _distribution(prefix: str, samples: Sequence[float]) -> dict[str, float]:
    return {
        f"{prefix}.p50": percentile(samples, 0.50),
        f"{prefix}.p95": percentile(samples, 0.95),
        f"{prefix}.mean": sum(samples) / len(samples),
        f"{prefix}.min": min(samples),
        f"{prefix}.max": max(samples),
    }


def _result(
    check: str,
    summary: str,
    text: str,
    metrics: Mapping[str, float],
    detail: Mapping[str, Any],
    *,
    ok: bool = True,
    undo: UndoRecord | None = None,
) -> ActionResult:
    """A result with ``text`` as output and as the evidence (bounded excerpt, full sha256)."""
    digest = hashlib.sha256(text.encode()).hexdigest()
    excerpt, now = text[:_EXCERPT], utc_timestamp()
    evidence = Evidence(check, "query", dict(detail), excerpt, digest, dict(metrics), at=now)
    return ActionResult(
        ok=ok,
        summary=summary,
        output=text,
        metrics=dict(metrics),
        evidence=(evidence,),
        undo=undo,
        details=dict(detail),
    )


async def run_timed_query(ctx: ActionContext, params: TimedQueryParams) -> ActionResult:
    """Metrics ``<prefix>.p50``, ``.p95``, ``.mean``, ``.min``, ``.max`` in milliseconds."""
    target = _target(ctx, params, "postgres.timed_query")
    samples: list[float] = []
    rows = 0
    try:
        async with _connection(target, params.timeout_s) as conn:
            if params.read_only:
                await _wait(
                    params.timeout_s, conn.execute("SET default_transaction_read_only = on")
                )
            for index in range(params.warmup + params.runs):
                started = time.perf_counter()
                rows = len(await _wait(params.timeout_s, conn.fetch(params.query, *params.args)))
                if index >= params.warmup:
                    samples.append((time.perf_counter() - started) * 1000)
    except _failures() as exc:
        return _failed(target, "timed query", exc, params.timeout_s)
    prefix = params.metric_prefix
    metrics = _distribution(prefix, samples)
    shown = " ".join(f"{s:.3f}" for s in samples)
    text = (
        f"runs={params.runs} warmup={params.warmup} rows={rows} "
        f"p50={metrics[prefix + '.p50']:.3f} p95={metrics[prefix + '.p95']:.3f} "
        f"mean={metrics[prefix + '.mean']:.3f} ms\nsamples_ms: {shown}"
    )
    query = _mask_sql(params.query, target)
    detail = {"dsn": target.shown, "query": query[:2000], "args": len(params.args), "rows": rows}
    summary = (
        f"query x{params.runs} on {target.shown}: p50 {metrics[prefix + '.p50']:.2f} ms, "
        f"p95 {metrics[prefix + '.p95']:.2f} ms, mean {metrics[prefix + '.mean']:.2f} ms"
    )
    return _result(f"timed query x{params.runs}: {query[:120]}", summary, text, metrics, detail)


_PLANNING = re.compile(r"Planning Time: ([\d.]+) ms")
_EXECUTION = re.compile(r"Execution Time: ([\d.]+) ms")
_COST = re.compile(r"cost=[\d.]+\.\.([\d.]+)")


async def run_explain(ctx: ActionContext, params: ExplainParams) -> ActionResult:
    """The plan as evidence (excerpt and sha256); metrics ``<prefix>.planning_ms``,
    ``.execution_ms`` (with ANALYZE), ``.total_cost``, ``.seq_scans``, ``.index_scans``."""
    target = _target(ctx, params, "postgres.explain")
    options = [
        name for name, on in (("ANALYZE", params.analyze), ("BUFFERS", params.buffers)) if on
    ]
    sql = f"EXPLAIN ({', '.join(options)}) {params.query}" if options else f"EXPLAIN {params.query}"
    try:
        async with _connection(target, params.timeout_s) as conn:
            transaction = conn.transaction()
            await _wait(params.timeout_s, transaction.start())
            try:
                records = await _wait(params.timeout_s, conn.fetch(sql, *params.args))
            finally:
                with anyio.move_on_after(params.timeout_s, shield=True):
                    await transaction.rollback()
    except _failures() as exc:
        return _failed(target, "EXPLAIN", exc, params.timeout_s)
    plan = "\n".join(str(record[0]) for record in records)
    prefix = params.metric_prefix
    metrics: dict[str, float] = {
        f"{prefix}.seq_scans": float(plan.count("Seq Scan")),
        f"{prefix}.index_scans": float(plan.count("Index Scan") + plan.count("Index Only Scan")),
    }
    for name, pattern in (("planning_ms", _PLANNING), ("execution_ms", _EXECUTION)):
        if found := pattern.search(plan):
            metrics[f"{prefix}.{name}"] = float(found.group(1))
    if cost := _COST.search(plan):
        metrics[f"{prefix}.total_cost"] = float(cost.group(1))
    missing = [text for text in params.expect_in_plan if text not in plan]
    top = plan.splitlines()[0].strip() if plan else "(no plan)"
    summary = f"EXPLAIN on {target.shown}: {top[:200]}"
    if missing:
        summary += f"; the plan lacks {', '.join(map(repr, missing))}"
    query = _mask_sql(params.query, target)
    detail = {"dsn": target.shown, "query": query[:2000], "options": options, "missing": missing}
    check = f"EXPLAIN ({', '.join(options)}) {query[:120]}"
    return _result(check, summary, plan, metrics, detail, ok=not missing)


async def run_pool_stats(ctx: ActionContext, params: PoolStatsParams) -> ActionResult:
    """Metrics ``<prefix>.min_size``, ``.max_size``, ``.size_peak``, ``.size``, ``.idle``,
    ``.acquire_ms.p50``/``.p95`` (wait for a connection) and ``.query_ms.p50``/``.p95``."""
    import asyncpg

    target = _target(ctx, params, "postgres.pool_stats")
    timeout_s = params.timeout_s
    waits: list[float] = []
    durations: list[float] = []
    errors: list[BaseException] = []
    work = iter(range(params.queries))  # shared by the workers: each query is taken once
    peak = 0
    try:
        pool = await _wait(
            timeout_s,
            asyncpg.create_pool(
                target.dsn,
                password=target.password,
                min_size=params.min_size,
                max_size=params.max_size,
                timeout=timeout_s,
                command_timeout=timeout_s,
                server_settings={"application_name": "orchestrator"},
            ),
        )
    except _failures() as exc:
        return _failed(target, "pool", exc, timeout_s)

    async def worker() -> None:
        nonlocal peak
        for _ in work:
            asked = time.perf_counter()
            try:
                conn = await _wait(timeout_s, pool.acquire())
                try:
                    waits.append((time.perf_counter() - asked) * 1000)
                    peak = max(peak, pool.get_size())
                    started = time.perf_counter()
                    await _wait(timeout_s, conn.fetch(params.query))
                    durations.append((time.perf_counter() - started) * 1000)
                finally:
                    with anyio.move_on_after(timeout_s, shield=True):
                        await pool.release(conn)
            except _failures() as exc:
                errors.append(exc)
                return

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(params.concurrency):
                tg.start_soon(worker)
        size, idle = pool.get_size(), pool.get_idle_size()
    finally:
        with anyio.move_on_after(timeout_s, shield=True):  # interrupted, close() terminates
            await pool.close()
    if errors:
        return _failed(target, f"pool ({len(errors)} worker(s) failed)", errors[0], timeout_s)
    prefix = params.metric_prefix
    metrics = {
        f"{prefix}.min_size": float(params.min_size),
        f"{prefix}.max_size": float(params.max_size),
        f"{prefix}.size_peak": float(peak),
        f"{prefix}.size": float(size),
        f"{prefix}.idle": float(idle),
        f"{prefix}.acquire_ms.p50": percentile(waits, 0.50),
        f"{prefix}.acquire_ms.p95": percentile(waits, 0.95),
        f"{prefix}.query_ms.p50": percentile(durations, 0.50),
        f"{prefix}.query_ms.p95": percentile(durations, 0.95),
    }
    text = "\n".join(f"{name}={value:.3f}" for name, value in metrics.items())
    query = _mask_sql(params.query, target)
    detail = {"dsn": target.shown, "query": query[:2000], "concurrency": params.concurrency}
    summary = (
        f"pool {params.min_size}..{params.max_size} on {target.shown}: {params.queries} queries "
        f"by {params.concurrency} workers, peak size {peak}, acquire wait p95 "
        f"{metrics[prefix + '.acquire_ms.p95']:.2f} ms"
    )
    check = f"pool of {params.max_size} under {params.concurrency} workers"
    return _result(check, summary, text, metrics, detail)


async def run_stat_statements(ctx: ActionContext, params: StatStatementsParams) -> ActionResult:
    """The top statements as evidence; metrics ``<prefix>.present`` (1/0), ``.count``,
    ``.top_mean_ms`` and ``.top_total_ms``."""
    import asyncpg

    target = _target(ctx, params, "postgres.stat_statements")
    prefix = params.metric_prefix
    absent = ""
    records: list[asyncpg.Record] = []
    try:
        async with _connection(target, params.timeout_s) as conn:
            version = await _wait(
                params.timeout_s,
                conn.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'"
                ),
            )
            if version is None:
                absent = "the pg_stat_statements extension is not installed in this database"
            else:
                query = (
                    "SELECT query, calls, total_exec_time, mean_exec_time, rows "
                    "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
                    f"WHERE datname = current_database()) ORDER BY {params.order_by} DESC LIMIT $1"
                )
                try:
                    records = await _wait(params.timeout_s, conn.fetch(query, params.top))
                except asyncpg.ObjectNotInPrerequisiteStateError:
                    absent = "pg_stat_statements is installed but not loaded"
    except _failures() as exc:
        return _failed(target, "pg_stat_statements", exc, params.timeout_s)
    detail: dict[str, Any] = {"dsn": target.shown, "order_by": params.order_by}
    if absent:
        fix = (
            "add pg_stat_statements to shared_preload_libraries, restart, and "
            "CREATE EXTENSION pg_stat_statements"
        )
        detail.update(present=False, reason=absent, fix=fix)
        summary = f"{target.shown}: {absent}" + (" (required)" if params.require else "")
        metrics = {f"{prefix}.present": 0.0}
        text = f"{absent} ({fix})"
        return _result("pg_stat_statements", summary, text, metrics, detail, ok=not params.require)
    lines = [f"{'calls':>9} {'total_ms':>12} {'mean_ms':>10} {'rows':>9}  query"]
    for record in records:
        text = " ".join(_mask_sql(str(record["query"]), target).split())[:300]
        lines.append(
            f"{record['calls']:>9} {record['total_exec_time']:>12.3f} "
            f"{record['mean_exec_time']:>10.3f} {record['rows']:>9}  {text}"
        )
    metrics = {f"{prefix}.present": 1.0, f"{prefix}.count": float(len(records))}
    if records:
        metrics[f"{prefix}.top_mean_ms"] = float(records[0]["mean_exec_time"])
        metrics[f"{prefix}.top_total_ms"] = float(records[0]["total_exec_time"])
    table = "\n".join(lines)
    detail.update(present=True, count=len(records))
    summary = f"{target.shown}: top {len(records)} statements by {params.order_by}"
    return _result("pg_stat_statements", summary, table, metrics, detail)


async def run_execute(ctx: ActionContext, params: ExecuteParams) -> ActionResult:
    """Run ``sql``; metric ``db.execute_ms``. With ``undo_sql``, the undo record runs it
    (attached to a failed result too: a timed-out statement may have been applied, and a
    failed ``CREATE INDEX CONCURRENTLY`` leaves an invalid index behind)."""
    target = _target(ctx, params, "postgres.execute")
    undo: UndoRecord | None = None
    if params.undo_sql is not None:
        connection: dict[str, Any] = {"dsn": target.dsn, "timeout_s": params.timeout_s}
        if params.password_env is not None:
            connection["password_env"] = params.password_env
        elif target.password:
            connection["password"] = SecretStr(target.password)
        undo = UndoRecord(
            "postgres.execute",
            {**connection, "sql": params.undo_sql},
            _mask_sql(params.undo_sql, target)[:200],
        )
    sql = _mask_sql(params.sql, target)
    sent = False
    try:
        async with _connection(target, params.timeout_s) as conn:
            started, sent = time.perf_counter(), True
            status = await _wait(params.timeout_s, conn.execute(params.sql, *params.args))
            elapsed_ms = (time.perf_counter() - started) * 1000
    except _failures() as exc:
        failed = _failed(target, f"{sql[:80]!r}", exc, params.timeout_s)
        return ActionResult(ok=False, summary=failed.summary, undo=undo if sent else None)
    metrics = {"db.execute_ms": elapsed_ms}
    detail = {"dsn": target.shown, "sql": sql[:2000], "status": status, "undo": undo is not None}
    summary = f"{status} in {elapsed_ms:.1f} ms on {target.shown}"
    return _result(f"execute {sql[:120]}", summary, f"{status}\n{sql}", metrics, detail, undo=undo)


def register(registry: ActionRegistry) -> None:
    """Add the PostgreSQL actions to ``registry``."""
    add = registry.register
    add("postgres.timed_query", TimedQueryParams, "time a query: p50/p95/mean")(run_timed_query)
    add("postgres.explain", ExplainParams, "EXPLAIN (ANALYZE, BUFFERS) as evidence")(run_explain)
    add("postgres.pool_stats", PoolStatsParams, "exercise a pool: acquire waits")(run_pool_stats)
    add("postgres.stat_statements", StatStatementsParams, "top statements")(run_stat_statements)
    add("postgres.execute", ExecuteParams, "run a statement, with undo_sql")(run_execute)
