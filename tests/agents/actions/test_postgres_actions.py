"""The PostgreSQL actions against a real PostgreSQL (password-protected role ``orch``)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from agents.actions.postgres import (
    ExecuteParams,
    ExplainParams,
    PoolStatsParams,
    StatStatementsParams,
    TimedQueryParams,
    register,
    run_execute,
    run_explain,
    run_pool_stats,
    run_stat_statements,
    run_timed_query,
)
from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from foundation.errors import ActionFailed
from tests.agents.actions.conftest import MakeCtx, assert_no_secret, numbers
from tests.servers_postgres import DATABASE, ROLE, PostgresServer

ROWS = 200_000


@pytest.fixture
def items(postgres_server: PostgresServer) -> Iterator[str]:
    """A table of its own with ``ROWS`` rows and no index, owned by the ``orch`` role."""
    schema = "t_" + secrets.token_hex(4)
    postgres_server.psql(
        f"CREATE SCHEMA {schema} AUTHORIZATION {ROLE}",
        f"CREATE TABLE {schema}.items AS SELECT g AS id, md5(g::text) AS payload "
        f"FROM generate_series(1, {ROWS}) AS g",
        f"ALTER TABLE {schema}.items OWNER TO {ROLE}",
        f"ANALYZE {schema}.items",
        database=DATABASE,
    )
    yield f"{schema}.items"
    postgres_server.psql(f"DROP SCHEMA {schema} CASCADE", database=DATABASE)


def env_ctx(make_ctx: MakeCtx, server: PostgresServer) -> ActionContext:
    return make_ctx(PGPASS_TEST=server.password)


async def timed(ctx: ActionContext, server: PostgresServer, query: str, *args: Any) -> float:
    params = TimedQueryParams(
        dsn=server.dsn_with(None), password_env="PGPASS_TEST", query=query, args=list(args)
    )
    result = await run_timed_query(ctx, params)
    assert result.ok, result.summary
    return float(result.metrics["db.response_ms.p50"])


async def explain(
    ctx: ActionContext, server: PostgresServer, query: str, *args: Any, **kw: Any
) -> ActionResult:
    params = ExplainParams(dsn=server.dsn, query=query, args=list(args), **kw)
    return await run_explain(ctx, params)


async def test_an_index_lowers_the_measured_p50(
    make_ctx: MakeCtx, postgres_server: PostgresServer, items: str
) -> None:
    ctx = env_ctx(make_ctx, postgres_server)
    query = f"SELECT id, payload FROM {items} WHERE id = $1"
    without = await timed(ctx, postgres_server, query, 123_457)
    before = await explain(ctx, postgres_server, query, 123_457, expect_in_plan=["Index Scan"])
    assert not before.ok and "Seq Scan" in before.evidence[0].excerpt
    assert "lacks 'Index Scan'" in before.summary
    assert numbers(before.metrics)["db.explain.seq_scans"] >= 1

    index = items.replace(".items", ".items_id_idx")
    created = await run_execute(
        ctx,
        ExecuteParams(
            dsn=postgres_server.dsn_with(None),
            password_env="PGPASS_TEST",
            sql=f"CREATE INDEX CONCURRENTLY items_id_idx ON {items} (id)",
            undo_sql=f"DROP INDEX CONCURRENTLY {index}",
        ),
    )
    assert created.ok, created.summary
    assert created.summary.startswith("CREATE INDEX in ")
    assert created.undo is not None and created.undo.params["password_env"] == "PGPASS_TEST"

    with_index = await timed(ctx, postgres_server, query, 123_457)
    # A seq scan of 200k rows against an index probe: usually 100x apart; 2x is the margin.
    assert with_index * 2 < without, (with_index, without)
    after = await explain(ctx, postgres_server, query, 123_457, expect_in_plan=["Index Scan"])
    assert after.ok, after.summary
    [evidence] = after.evidence
    assert "Index Scan" in evidence.excerpt and evidence.sha256
    assert evidence.source == "query" and "Execution Time" in evidence.excerpt
    assert numbers(after.metrics)["db.explain.index_scans"] >= 1
    assert (
        numbers(after.metrics)["db.explain.execution_ms"]
        < numbers(before.metrics)["db.explain.execution_ms"]
    )
    assert {"db.explain.planning_ms", "db.explain.total_cost"} <= set(after.metrics)

    registry = ActionRegistry()
    register(registry)
    action = registry.get_action(created.undo.action)
    undone = await action.run(ctx, action.params.model_validate(dict(created.undo.params)))
    assert undone.ok and undone.summary.startswith("DROP INDEX")
    assert "Seq Scan" in (await explain(ctx, postgres_server, query, 123_457)).output


async def test_timed_query_metrics_and_evidence(
    make_ctx: MakeCtx, postgres_server: PostgresServer
) -> None:
    params = TimedQueryParams(
        dsn=postgres_server.dsn,
        query="SELECT $1::int + 1",
        args=[41],
        runs=7,
        warmup=1,
        metric_prefix="chat.db.response_ms",
    )
    result = await run_timed_query(make_ctx(), params)
    assert result.ok
    m = result.metrics
    assert set(m) == {f"chat.db.response_ms.{k}" for k in ("p50", "p95", "mean", "min", "max")}
    low, mid, high = (float(m[f"chat.db.response_ms.{k}"]) for k in ("min", "p50", "max"))
    assert 0 < low <= mid <= high
    [evidence] = result.evidence
    assert evidence.detail["query"] == "SELECT $1::int + 1" and evidence.detail["rows"] == 1
    assert len(evidence.excerpt.split("samples_ms: ")[1].split()) == 7
    assert_no_secret(result, postgres_server.password)


async def test_timed_query_is_read_only_by_default(
    make_ctx: MakeCtx, postgres_server: PostgresServer
) -> None:
    params = TimedQueryParams(dsn=postgres_server.dsn, query="CREATE TABLE nope (x int)")
    result = await run_timed_query(make_ctx(), params)
    assert not result.ok and "25006" in result.summary and "read-only" in result.summary


async def test_explain_rolls_back_what_it_runs(
    make_ctx: MakeCtx, postgres_server: PostgresServer, items: str
) -> None:
    ctx = make_ctx()
    result = await explain(ctx, postgres_server, f"DELETE FROM {items}")
    assert result.ok and result.metrics["db.explain.seq_scans"] == 1
    assert "Delete on" in result.output
    count = postgres_server.psql(f"SELECT count(*) FROM {items}", database=DATABASE)
    assert int(count) == ROWS


async def test_wrong_password_is_a_clear_redacted_failure(
    make_ctx: MakeCtx, postgres_server: PostgresServer
) -> None:
    wrong = "wrong-pg-password-81d3"
    params = TimedQueryParams(dsn=postgres_server.dsn_with(wrong), query="SELECT 1")
    result = await run_timed_query(make_ctx(), params)
    assert not result.ok
    assert "login refused: password authentication failed" in result.summary
    assert f"{ROLE}:***@" in result.summary
    assert_no_secret(result, wrong)
    with pytest.raises(ActionFailed, match="password_env 'MISSING' is not set") as caught:
        await run_timed_query(
            make_ctx(),
            TimedQueryParams(dsn=postgres_server.dsn, password_env="MISSING", query="SELECT 1"),
        )
    assert_no_secret(caught.value, postgres_server.password)


async def test_statement_timeout_and_server_errors(
    make_ctx: MakeCtx, postgres_server: PostgresServer
) -> None:
    slow = TimedQueryParams.model_validate(
        {"dsn": postgres_server.dsn, "query": "SELECT pg_sleep(10)", "runs": 1, "warmup": 0}
        | {"timeout_s": "300ms"}  # as a plan writes it
    )
    result = await run_timed_query(make_ctx(), slow)
    assert not result.ok and "no answer within 0.3s" in result.summary
    bad = ExecuteParams(dsn=postgres_server.dsn, sql="CREATE TABLE (", undo_sql="SELECT 1")
    failed = await run_execute(make_ctx(), bad)
    assert not failed.ok and "42601" in failed.summary and "syntax error" in failed.summary


async def test_passwords_in_sql_are_masked(
    make_ctx: MakeCtx, postgres_server: PostgresServer
) -> None:
    role = "r_" + secrets.token_hex(4)
    postgres_server.psql(f"ALTER ROLE {ROLE} CREATEROLE")
    try:
        result = await run_execute(
            make_ctx(),
            ExecuteParams(
                dsn=postgres_server.dsn,
                sql=f"CREATE ROLE {role} LOGIN PASSWORD 'role-secret-0a9f'",
                undo_sql=f"DROP ROLE {role}",
            ),
        )
        assert result.ok, result.summary
        assert "PASSWORD '***'" in result.evidence[0].excerpt
        assert_no_secret(result, "role-secret-0a9f", postgres_server.password)
    finally:
        postgres_server.psql(f"DROP ROLE IF EXISTS {role}", f"ALTER ROLE {ROLE} NOCREATEROLE")


async def test_pool_stats(make_ctx: MakeCtx, postgres_server: PostgresServer) -> None:
    params = PoolStatsParams(
        dsn=postgres_server.dsn,
        min_size=1,
        max_size=3,
        concurrency=8,
        queries=40,
        query="SELECT pg_sleep(0.005)",
    )
    result = await run_pool_stats(make_ctx(), params)
    assert result.ok, result.summary
    m = {k: float(v) for k, v in result.metrics.items()}
    assert (m["db.pool.min_size"], m["db.pool.max_size"]) == (1, 3)
    # Eight workers on three connections: the pool grows to its cap and workers queue.
    assert m["db.pool.size_peak"] == 3
    assert 0 <= m["db.pool.acquire_ms.p50"] <= m["db.pool.acquire_ms.p95"]
    assert m["db.pool.acquire_ms.p95"] > 1  # someone waited for a 5 ms query to finish
    assert m["db.pool.query_ms.p50"] >= 5
    assert_no_secret(result, postgres_server.password)


def test_pool_params_are_bounded() -> None:
    with pytest.raises(ValidationError, match="min_size cannot exceed max_size"):
        PoolStatsParams(dsn="postgresql://u@h:5432/d", min_size=5, max_size=2)
    with pytest.raises(ValidationError):
        PoolStatsParams(dsn="mysql://u@h/d")


async def test_stat_statements_absent(make_ctx: MakeCtx, postgres_server: PostgresServer) -> None:
    params = StatStatementsParams(dsn=postgres_server.dsn)
    result = await run_stat_statements(make_ctx(), params)
    assert result.ok and result.metrics == {"db.stat_statements.present": 0}
    assert result.evidence[0].detail["present"] is False
    assert "shared_preload_libraries" in result.evidence[0].excerpt
    required = await run_stat_statements(make_ctx(), params.model_copy(update={"require": True}))
    assert not required.ok and "not installed" in required.summary


async def test_stat_statements_present(make_ctx: MakeCtx, fresh_postgres: PostgresServer) -> None:
    fresh_postgres.psql("CREATE EXTENSION pg_stat_statements", database=DATABASE)
    params = StatStatementsParams(dsn=fresh_postgres.dsn, top=5, order_by="calls")
    unloaded = await run_stat_statements(make_ctx(), params)
    assert unloaded.ok and "installed but not loaded" in unloaded.summary

    fresh_postgres.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    fresh_postgres.restart()
    marker = "SELECT $1::int * 2 AS stat_statements_marker"
    timed = TimedQueryParams(dsn=fresh_postgres.dsn, query=marker, args=[21], runs=12, warmup=0)
    assert (await run_timed_query(make_ctx(), timed)).ok
    result: ActionResult = await run_stat_statements(make_ctx(), params)
    assert result.ok, result.summary
    assert result.metrics["db.stat_statements.present"] == 1
    assert 1 <= numbers(result.metrics)["db.stat_statements.count"] <= 5
    assert "stat_statements_marker" in result.evidence[0].excerpt
    assert "top_mean_ms" in " ".join(result.metrics)
