"""The Redis actions against real redis-server processes (with requirepass)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from agents.actions.redis import (
    RedisAclDelUserParams,
    RedisAclSetUserParams,
    RedisConfigSetParams,
    RedisProbeParams,
    register,
    run_acl_deluser,
    run_acl_setuser,
    run_config_set,
    run_probe,
)
from agents.base import ActionContext, ActionResult, UndoRecord
from agents.registry import ActionRegistry
from foundation.errors import ActionFailed
from tests.agents.actions.conftest import MakeCtx, assert_no_secret, numbers
from tests.ports import free_port
from tests.servers import RedisServer


async def probe(ctx: ActionContext, url: str, **params: Any) -> ActionResult:
    return await run_probe(ctx, RedisProbeParams(url=url, count=3, timeout_s=2, **params))


async def undo(ctx: ActionContext, record: UndoRecord | None) -> ActionResult:
    """Run an undo record the way the scheduler would: validate its params, call the action."""
    assert record is not None
    registry = ActionRegistry()
    register(registry)
    action = registry.get_action(record.action)
    return await action.run(ctx, action.params.model_validate(dict(record.params)))


async def test_probe_with_the_right_password(make_ctx: MakeCtx, redis_server: RedisServer) -> None:
    result = await probe(make_ctx(), redis_server.url)
    assert result.ok, result.summary
    m = result.metrics
    assert (m["redis.auth_ok"], m["redis.noauth_errors"], m["redis.pings_ok"]) == (1, 0, 3)
    assert 0 < float(m["redis.rtt_ms.p50"]) <= float(m["redis.rtt_ms.p95"]) < 1000
    [evidence] = result.evidence
    assert evidence.source == "redis" and evidence.verified
    assert evidence.detail["replies"] == {"PONG": 3}
    assert evidence.detail["url"] == f"redis://:***@127.0.0.1:{redis_server.port}/0"
    assert evidence.sha256 and "PONG" in evidence.excerpt
    assert_no_secret(result, redis_server.password)


async def test_password_from_the_step_environment(
    make_ctx: MakeCtx, redis_server: RedisServer
) -> None:
    ctx = make_ctx(REDIS_PASSWORD=redis_server.password)
    result = await probe(ctx, redis_server.url_with(None), password_env="REDIS_PASSWORD")
    assert result.ok and result.metrics["redis.auth_ok"] == 1
    assert result.details["password_source"] == "env:REDIS_PASSWORD"
    assert_no_secret(result, redis_server.password)


async def test_probe_over_tls(make_ctx: MakeCtx, tls_redis: RedisServer) -> None:
    result = await probe(make_ctx(), tls_redis.url)
    assert result.ok and result.metrics["redis.auth_ok"] == 1, result.summary
    assert result.details["url"].startswith("rediss://:***@127.0.0.1:")
    assert "ssl_ca_certs=" in result.details["url"]
    assert_no_secret(result, tls_redis.password)


async def test_missing_password_variable_is_a_clear_failure(
    make_ctx: MakeCtx, redis_server: RedisServer
) -> None:
    with pytest.raises(ActionFailed, match="password_env 'REDIS_PASSWORD' is not set"):
        await probe(make_ctx(), redis_server.url_with(None), password_env="REDIS_PASSWORD")


async def test_no_password_is_counted_as_noauth_not_a_crash(
    make_ctx: MakeCtx, redis_server: RedisServer
) -> None:
    url = redis_server.url_with(None)
    result = await probe(make_ctx(), url)
    assert not result.ok
    assert result.metrics["redis.auth_ok"] == 0
    assert numbers(result.metrics)["redis.noauth_errors"] >= 1
    assert "redis.rtt_ms.p50" not in result.metrics
    assert "NOAUTH" in result.summary and "expected authentication to succeed" in result.summary
    assert result.evidence[0].detail["replies"] == {"NOAUTH": 1}
    # The same refusal is what a security check wants to see, and what a survey accepts.
    assert (await probe(make_ctx(), url, expect_auth=False)).ok
    assert (await probe(make_ctx(), url, expect_auth=None)).ok


async def test_wrong_password_is_clear_and_redacted(
    make_ctx: MakeCtx, redis_server: RedisServer
) -> None:
    wrong = "not-the-password-4f1c"
    result = await probe(make_ctx(), redis_server.url_with(wrong))
    assert not result.ok
    assert (
        numbers(result.metrics)["redis.noauth_errors"] >= 1 and result.metrics["redis.auth_ok"] == 0
    )
    assert "WRONGPASS" in result.summary and ":***@" in result.summary
    assert_no_secret(result, wrong, redis_server.password)


async def test_an_accepting_server_fails_expect_auth_false(
    make_ctx: MakeCtx, redis_server: RedisServer
) -> None:
    result = await probe(make_ctx(), redis_server.url, expect_auth=False)
    assert not result.ok and "expected a refusal" in result.summary


async def test_nothing_listening_is_a_failed_result(make_ctx: MakeCtx) -> None:
    result = await probe(make_ctx(), f"redis://:pw-xyz@127.0.0.1:{free_port()}/0")
    assert not result.ok and "cannot connect" in result.summary
    assert result.metrics["redis.auth_ok"] == 0 and result.metrics["redis.noauth_errors"] == 0
    assert_no_secret(result, "pw-xyz")


def test_params_refuse_bad_urls_without_repeating_them() -> None:
    with pytest.raises(ValidationError) as caught:
        RedisProbeParams(url="http://:hunter22@example.com/")
    assert "hunter22" not in str(caught.value.errors(include_input=False))
    with pytest.raises(ValidationError, match="not both"):
        RedisProbeParams(url="redis://h:1/0", password=SecretStr("x"), password_env="X")
    with pytest.raises(ValidationError):
        RedisProbeParams(url="redis://h:1/0", surprise=1)  # type: ignore[call-arg]


async def test_config_set_requirepass_and_undo(make_ctx: MakeCtx, fresh_redis: RedisServer) -> None:
    old, new = fresh_redis.password, "new-secret-93ac1d"
    ctx = make_ctx(OLD_PASSWORD=old, NEW_PASSWORD=new)
    bare = fresh_redis.url_with(None)
    params = RedisConfigSetParams(
        url=bare, password_env="OLD_PASSWORD", parameter="requirepass", value_env="NEW_PASSWORD"
    )
    result = await run_config_set(ctx, params)
    assert result.ok, result.summary
    assert result.summary.endswith("requirepass *** -> ***")
    assert result.evidence[0].detail["verified"] is True
    assert (await probe(ctx, bare, password_env="NEW_PASSWORD")).metrics["redis.auth_ok"] == 1
    assert (await probe(ctx, bare, password_env="OLD_PASSWORD")).metrics["redis.auth_ok"] == 0
    # The undo refers to the variables: it holds no secret at all.
    assert result.undo is not None
    assert dict(result.undo.params) == {
        "url": bare,
        "timeout_s": 5.0,
        "password_env": "NEW_PASSWORD",
        "parameter": "requirepass",
        "value_env": "OLD_PASSWORD",
    }
    assert_no_secret(result, old, new)

    undone = await undo(ctx, result.undo)
    assert undone.ok, undone.summary
    assert (await probe(ctx, bare, password_env="OLD_PASSWORD")).metrics["redis.auth_ok"] == 1
    assert (await probe(ctx, bare, password_env="NEW_PASSWORD")).metrics["redis.auth_ok"] == 0
    assert_no_secret(undone, old, new)


async def test_config_set_with_inline_secrets_keeps_them_masked(
    make_ctx: MakeCtx, fresh_redis: RedisServer
) -> None:
    old, new = fresh_redis.password, "inline-secret-77e0"
    ctx = make_ctx()
    params = RedisConfigSetParams(
        url=fresh_redis.url, parameter="requirepass", value=SecretStr(new)
    )
    result = await run_config_set(ctx, params)
    assert result.ok
    assert result.undo is not None and isinstance(result.undo.params["value"], SecretStr)
    assert_no_secret(result, old, new)
    assert (await probe(ctx, fresh_redis.url_with(new))).ok
    undone = await undo(ctx, result.undo)
    assert undone.ok, undone.summary
    assert (await probe(ctx, fresh_redis.url)).ok
    assert not (await probe(ctx, fresh_redis.url_with(new))).ok
    assert_no_secret(undone, old, new)


async def test_config_set_plain_parameter_and_undo(
    make_ctx: MakeCtx, fresh_redis: RedisServer
) -> None:
    ctx = make_ctx()
    params = RedisConfigSetParams(
        url=fresh_redis.url, parameter="maxmemory-policy", value=SecretStr("allkeys-lru")
    )
    result = await run_config_set(ctx, params)
    assert result.ok and result.summary.endswith("maxmemory-policy noeviction -> allkeys-lru")
    assert result.undo is not None and result.undo.params["value"] == "noeviction"
    assert (await undo(ctx, result.undo)).summary.endswith("allkeys-lru -> noeviction")


async def test_config_set_errors_are_failed_results(
    make_ctx: MakeCtx, fresh_redis: RedisServer
) -> None:
    ctx = make_ctx()
    bad = RedisConfigSetParams(url=fresh_redis.url, parameter="maxmemory", value=SecretStr("lots"))
    result = await run_config_set(ctx, bad)
    assert not result.ok and "server replied" in result.summary
    with pytest.raises(ActionFailed, match="no CONFIG parameter 'no-such-thing'"):
        await run_config_set(
            ctx,
            RedisConfigSetParams(
                url=fresh_redis.url, parameter="no-such-thing", value=SecretStr("1")
            ),
        )


async def test_acl_setuser_creates_a_user_and_undo_deletes_it(
    make_ctx: MakeCtx, fresh_redis: RedisServer
) -> None:
    user_password = "app-user-secret-5d2e"
    ctx = make_ctx(APP_PASSWORD=user_password)
    params = RedisAclSetUserParams(
        url=fresh_redis.url,
        user="app",
        rules=["on", "~app:*", "+@connection", "+get"],
        user_password_env="APP_PASSWORD",
    )
    result = await run_acl_setuser(ctx, params)
    assert result.ok, result.summary
    assert result.evidence[0].detail["before"] == "absent"
    assert "#***" in result.evidence[0].detail["after"]
    assert_no_secret(result, user_password, fresh_redis.password)
    as_app = await probe(
        ctx, fresh_redis.url_with(None), username="app", password_env="APP_PASSWORD"
    )
    assert as_app.ok and as_app.metrics["redis.auth_ok"] == 1

    assert result.undo is not None and result.undo.action == "redis.acl_deluser"
    assert (await undo(ctx, result.undo)).ok
    gone = await probe(ctx, fresh_redis.url_with(None), username="app", password_env="APP_PASSWORD")
    assert gone.metrics["redis.auth_ok"] == 0 and "WRONGPASS" in gone.summary


async def test_acl_setuser_on_an_existing_user_restores_its_rules(
    make_ctx: MakeCtx, fresh_redis: RedisServer
) -> None:
    ctx = make_ctx()
    create = RedisAclSetUserParams(
        url=fresh_redis.url, user="ro", rules=["on", ">ro-pass-1", "~cache:*", "+@read"]
    )
    assert (await run_acl_setuser(ctx, create)).ok
    change = RedisAclSetUserParams(
        url=fresh_redis.url, user="ro", rules=["off", "resetkeys", "~other:*", "+@write"]
    )
    changed = await run_acl_setuser(ctx, change)
    assert changed.ok
    original = changed.evidence[0].detail["before"]
    assert changed.evidence[0].detail["after"] != original
    assert changed.undo is not None and changed.undo.params["rules"][0] == "resetpass"
    assert_no_secret(changed, "ro-pass-1")

    restored = await undo(ctx, changed.undo)
    assert restored.ok and restored.evidence[0].detail["after"] == original
    as_ro = await probe(ctx, fresh_redis.url_with("ro-pass-1"), username="ro")
    assert as_ro.metrics["redis.auth_ok"] == 1


async def test_acl_deluser_and_undo_recreates(make_ctx: MakeCtx, fresh_redis: RedisServer) -> None:
    ctx = make_ctx()
    create = RedisAclSetUserParams(
        url=fresh_redis.url, user="tmp", rules=["on", ">tmp-pass-1", "~*", "+ping"]
    )
    created = await run_acl_setuser(ctx, create)
    deleted = await run_acl_deluser(ctx, RedisAclDelUserParams(url=fresh_redis.url, user="tmp"))
    assert deleted.ok and deleted.evidence[0].detail["after"] == "absent"
    recreated = await undo(ctx, deleted.undo)
    assert recreated.evidence[0].detail["after"] == created.evidence[0].detail["after"]
    assert (await probe(ctx, fresh_redis.url_with("tmp-pass-1"), username="tmp")).ok
    nobody = await run_acl_deluser(ctx, RedisAclDelUserParams(url=fresh_redis.url, user="nobody"))
    assert nobody.ok and nobody.undo is None and nobody.summary.endswith("absent -> absent")
