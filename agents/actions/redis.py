"""Redis actions: ``redis.probe``, ``.config_set``, ``.acl_setuser``, ``.acl_deluser``.

One connection per action (redis.asyncio: asyncio backend only; no automatic retries), every
await under ``anyio.fail_after(timeout_s)``. The password (from the URL, ``password``, or the
step environment's variable named by ``password_env``) never reaches a summary, evidence,
output or error. NOAUTH and WRONGPASS replies are evidence, not crashes. Changes return an
:class:`~agents.base.UndoRecord` (also with a failed result, if the change may have been
applied) naming environment variables where the secrets came from them, else holding them
as pydantic ``SecretStr`` (printed ``**********``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agents.actions._stats import percentile
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import is_secret_name, scrub, url_password, without_credentials
from streams.durations import Duration

if TYPE_CHECKING:  # imported where used: validating a plan must not pay for the client
    import redis.asyncio

__all__ = [
    "RedisAclDelUserParams",
    "RedisAclSetUserParams",
    "RedisConfigSetParams",
    "RedisConnectionParams",
    "RedisProbeParams",
    "register",
    "run_acl_deluser",
    "run_acl_setuser",
    "run_config_set",
    "run_probe",
]

T = TypeVar("T")

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MASK = "***"
#: ACL rules that carry a password (``>pw``, ``<pw``) or its hash (``#h``, ``!h``).
_PASSWORD_RULE = re.compile(r"^[<>#!]")
_ACL_TOKEN = re.compile(r"\([^)]*\)|\S+")
#: Clears a user before its former rules are set again. Not ``reset``: that also sets
#: ``sanitize-payload``, which a user created without it does not have.
_ACL_CLEAR = ("resetpass", "resetkeys", "resetchannels", "clearselectors", "-@all")
_EXCERPT = 4096


def _failures() -> tuple[type[BaseException], ...]:
    """What a call to the server may raise (an ``except`` evaluates it only on an error)."""
    import redis

    return (redis.RedisError, OSError, TimeoutError)


class RedisConnectionParams(BaseModel):
    """Where and as whom to connect: ``url`` (``redis://`` or ``rediss://``, which may carry
    the password), ``username`` (an ACL user; default: the URL's, else ``default``), and at
    most one of ``password`` / ``password_env`` (which override the URL's password).
    ``timeout_s`` bounds the connect and each command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(max_length=2048, description="redis://[user[:password]@]host:port/db")
    username: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^\S+$")
    password: SecretStr | None = None
    password_env: str | None = Field(
        default=None, pattern=_ENV_NAME, description="Variable of the step's environment."
    )
    timeout_s: Duration = Field(default=5.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        # Messages here never repeat the URL: it may carry a password.
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError on a bad port)
        except ValueError:
            raise ValueError("not a valid URL (write redis://host:6379/0)") from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("needs a redis:// or rediss:// URL with a host")
        return url

    @model_validator(mode="after")
    def _one_password_source(self) -> RedisConnectionParams:
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self


class RedisProbeParams(RedisConnectionParams):
    """Parameters of ``redis.probe``: connect (and authenticate), then PING ``count`` times.

    ``expect_auth``: true (default) passes when authentication succeeds and every PING gets
    PONG; false passes when the server refuses the client (NOAUTH / WRONGPASS), for checking
    that unauthenticated access is closed; null passes whenever the server answers.
    """

    count: int = Field(default=5, ge=1, le=1000)
    interval_s: Duration = Field(default=0.0, le=60)
    expect_auth: bool | None = True


class RedisConfigSetParams(RedisConnectionParams):
    """Parameters of ``redis.config_set``: ``parameter`` and exactly one of ``value`` /
    ``value_env`` (the variable holding it, for secrets such as ``requirepass``)."""

    parameter: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$", max_length=128)
    value: SecretStr | None = None
    value_env: str | None = Field(default=None, pattern=_ENV_NAME)

    @model_validator(mode="after")
    def _one_value_source(self) -> RedisConfigSetParams:
        if (self.value is None) == (self.value_env is None):
            raise ValueError("give exactly one of value and value_env")
        return self


class RedisAclSetUserParams(RedisConnectionParams):
    """Parameters of ``redis.acl_setuser``: ``user`` and its ``rules`` (as ACL SETUSER takes
    them: ``on``, ``~cache:*``, ``+@read``, ``(~k* +get)``...). ``user_password_env`` adds
    the password held in that variable (the rule ``>password``) without writing it in the
    plan."""

    user: str = Field(min_length=1, max_length=256, pattern=r"^[^\s()]+$")
    rules: list[Annotated[str, Field(pattern=r"\S")]] = Field(default_factory=list, max_length=200)
    user_password_env: str | None = Field(default=None, pattern=_ENV_NAME)


class RedisAclDelUserParams(RedisConnectionParams):
    """Parameters of ``redis.acl_deluser``: the ``user`` to delete."""

    user: str = Field(min_length=1, max_length=256, pattern=r"^[^\s()]+$")


@dataclass(frozen=True, slots=True)
class _Target:
    """A resolved connection: ``url`` without credentials, ``shown`` redacted for humans,
    and where the password came from (``url``, ``param``, ``env:NAME`` or ``none``)."""

    url: str
    shown: str
    username: str | None
    password: str | None
    source: str


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without user and password (in the userinfo or the query), and those two."""
    user = urlsplit(url).username
    return without_credentials(url), unquote(user) if user else None, url_password(url)


def _shown(bare_url: str, username: str | None, has_password: bool) -> str:
    """The redacted form of a URL for messages: ``redis://user:***@host:port/0``."""
    if username is None and not has_password:
        return bare_url
    parts = urlsplit(bare_url)
    userinfo = f"{username or ''}:{_MASK}" if has_password else f"{username}"
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", *parts[2:]))


def _from_env(ctx: ActionContext, action: str, name: str, what: str) -> str:
    try:
        return ctx.env[name]
    except KeyError:
        raise ActionFailed(
            action,
            f"{what} {name!r} is not set in the step's environment (fix: export it where "
            "the daemon runs and list it in the daemon's pass_env setting, ORCH_PASS_ENV)",
            retryable=False,  # the environment will not change before a retry
        ) from None


def _target(ctx: ActionContext, params: RedisConnectionParams, action: str) -> _Target:
    bare, url_user, url_password = _split_credentials(params.url)
    username = params.username or url_user
    if params.password_env is not None:
        password: str | None = _from_env(ctx, action, params.password_env, "password_env")
        source = f"env:{params.password_env}"
    elif params.password is not None:
        password, source = params.password.get_secret_value(), "param"
    else:
        password, source = url_password, "url" if url_password else "none"
    return _Target(bare, _shown(bare, username, bool(password)), username, password, source)


def _client(target: _Target, timeout_s: float) -> redis.asyncio.Redis:
    """A one-connection client that never retries by itself (the action owns deadlines)."""
    import redis.asyncio
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis.from_url(
        target.url,
        username=target.username if target.password else None,  # no AUTH without a password
        password=target.password,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


async def _close(client: redis.asyncio.Redis, timeout_s: float) -> None:
    with anyio.move_on_after(timeout_s, shield=True):  # cleanup survives cancellation
        await client.aclose()


async def _call(timeout_s: float, func: Callable[[], Awaitable[T]]) -> T:
    with anyio.fail_after(timeout_s):
        return await func()


def _auth_code(exc: redis.AuthenticationError, target: _Target) -> str:
    code = getattr(exc, "status_code", None)  # set by redis-py 6+ from the reply's prefix
    if code in ("NOAUTH", "WRONGPASS"):
        return str(code)
    return "WRONGPASS" if target.password else "NOAUTH"


def _reason(exc: BaseException, target: _Target, timeout_s: float, secrets: Sequence[str]) -> str:
    """Why a call failed, in words a user can act on, with no secret in it."""
    import redis

    text = scrub(str(exc), [target.password, *secrets])
    if isinstance(exc, redis.AuthenticationError) and _auth_code(exc, target) == "NOAUTH":
        return "NOAUTH: a password is required (fix: set password_env, or put it in the URL)"
    if isinstance(exc, redis.AuthenticationError):
        return (
            f"WRONGPASS: wrong password, or unknown or disabled user {target.username or 'default'}"
            f" (fix: check the password from {target.source} against requirepass or the ACL)"
        )
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        return f"no answer within {timeout_s:g}s"
    if isinstance(exc, redis.ConnectionError | OSError):
        return f"cannot connect: {text or type(exc).__name__}"
    if isinstance(exc, redis.ResponseError):
        return f"server replied: {text}"
    return f"{type(exc).__name__}: {text}"


def _evidence(
    check: str, detail: Mapping[str, Any], lines: Sequence[str], metrics: Mapping[str, float]
) -> Evidence:
    text = "\n".join(lines)
    digest = hashlib.sha256(text.encode()).hexdigest()
    excerpt, now = text[-_EXCERPT:], utc_timestamp()
    return Evidence(check, "redis", dict(detail), excerpt, digest, dict(metrics), at=now)


def _undo_connection(target: _Target, params: RedisConnectionParams) -> dict[str, Any]:
    """Connection parameters for an undo action: the same server and user, the password by
    reference when it came from the environment, else as a SecretStr."""
    found: dict[str, Any] = {"url": target.url, "timeout_s": params.timeout_s}
    if target.username is not None:
        found["username"] = target.username
    if params.password_env is not None:
        found["password_env"] = params.password_env
    elif target.password:
        found["password"] = SecretStr(target.password)
    return found


async def run_probe(ctx: ActionContext, params: RedisProbeParams) -> ActionResult:
    """Connect (authenticating when a password is given) and PING ``count`` times.

    Metrics: ``redis.auth_ok`` (1/0), ``redis.noauth_errors`` (NOAUTH/WRONGPASS replies
    seen), ``redis.pings_ok``, ``redis.connect_ms`` and ``redis.rtt_ms.p50``/``p95`` (PINGs
    answered PONG; absent when none was). ``ok`` follows ``expect_auth``.
    """
    import redis

    target = _target(ctx, params, "redis.probe")
    who = target.username or "default"
    client = _client(target, params.timeout_s)
    replies: Counter[str] = Counter()
    lines: list[str] = []
    rtts: list[float] = []
    metrics: dict[str, float] = {}
    failure = refusal = ""
    try:
        for index in range(params.count + 1):  # 0: connect and authenticate; then the PINGs
            what = f"PING {index}" if index else "connect"
            if index > 1 and params.interval_s:
                await anyio.sleep(params.interval_s)
            sent = time.perf_counter()
            try:
                if index:
                    await _call(params.timeout_s, client.ping)
                else:
                    await _call(params.timeout_s, client.initialize)
            except redis.AuthenticationError as exc:
                replies[code := _auth_code(exc, target)] += 1
                lines.append(f"{what}: {code} {scrub(str(exc), [target.password])[:300]}")
                if not index:  # refused at the door: every PING would be refused the same way
                    refusal = _reason(exc, target, params.timeout_s, [])
                    break
            except redis.ResponseError as exc:  # e.g. NOPERM for an ACL user
                text = scrub(str(exc), [target.password])
                replies[text.split(" ", 1)[0] or "ERR"] += 1
                lines.append(f"{what}: {text[:300]}")
            except _failures() as exc:
                failure = _reason(exc, target, params.timeout_s, [])
                lines.append(f"{what}: {failure}")
                break
            else:
                elapsed_ms = (time.perf_counter() - sent) * 1000
                if index:
                    rtts.append(elapsed_ms)
                    replies["PONG"] += 1
                else:
                    metrics["redis.connect_ms"] = elapsed_ms
                lines.append(f"{what}: {'PONG' if index else 'ok as ' + who} {elapsed_ms:.3f} ms")
    finally:
        await _close(client, params.timeout_s)

    authenticated = "redis.connect_ms" in metrics
    metrics["redis.auth_ok"] = 1.0 if authenticated else 0.0
    metrics["redis.noauth_errors"] = float(replies["NOAUTH"] + replies["WRONGPASS"])
    metrics["redis.pings_ok"] = float(len(rtts))
    if rtts:
        metrics["redis.rtt_ms.p50"] = percentile(rtts, 0.50)
        metrics["redis.rtt_ms.p95"] = percentile(rtts, 0.95)

    if failure:
        ok, summary = False, f"redis {target.shown}: {failure}"
    elif not authenticated:
        ok = params.expect_auth is not True
        summary = f"redis {target.shown}: refused {who}: {refusal}"
        summary += " (expected authentication to succeed)" if params.expect_auth else ""
    else:
        summary = f"redis {target.shown}: authenticated as {who}, {len(rtts)}/{params.count} PONG"
        if rtts:
            summary += f", rtt p50 {metrics['redis.rtt_ms.p50']:.2f} ms"
        all_pong = len(rtts) == params.count
        ok = params.expect_auth is None or (params.expect_auth is True and all_pong)
        summary += "" if params.expect_auth is not False else " (expected a refusal)"
    detail = {
        "url": target.shown,
        "username": who,
        "password_source": target.source,
        "count": params.count,
        "replies": dict(replies),
        "expect_auth": params.expect_auth,
    }
    evidence = _evidence(f"redis AUTH and PING x{params.count} as {who}", detail, lines, metrics)
    return ActionResult(
        ok=ok,
        summary=summary,
        output="\n".join(lines),
        metrics=dict(metrics),
        evidence=(evidence,),
        details=detail,
    )


def _masked(parameter: str, value: str) -> str:
    if is_secret_name(parameter):
        return _MASK if value else "(empty)"
    return value


def _config_undo(
    params: RedisConfigSetParams, target: _Target, previous: str, new: str
) -> UndoRecord:
    parameter = params.parameter.lower()
    connection = _undo_connection(target, params)
    if parameter == "requirepass" and target.username in (None, "default"):
        # After the change the default user's password is the new value: the undo has to
        # log in with it.
        connection.pop("password", None)
        connection.pop("password_env", None)
        if params.value_env is not None:
            connection["password_env"] = params.value_env
        elif new:
            connection["password"] = SecretStr(new)
    value: dict[str, Any] = {"value": previous}
    if params.password_env is not None and previous and previous == target.password:
        value = {"value_env": params.password_env}  # by reference: the undo holds no secret
    elif is_secret_name(parameter) and previous:
        value = {"value": SecretStr(previous)}
    return UndoRecord(
        action="redis.config_set",
        params={**connection, "parameter": parameter, **value},
        description=f"CONFIG SET {parameter} back to {_masked(parameter, previous)}",
    )


async def run_config_set(ctx: ActionContext, params: RedisConfigSetParams) -> ActionResult:
    """CONFIG GET ``parameter``, CONFIG SET it, and CONFIG GET again to verify.

    Values of parameters named like ``*pass*``, ``*secret*``, ``*token*`` or ``*auth*`` are
    shown as ``***`` (or ``(empty)``). The undo record sets the previous value back.
    """
    action = "redis.config_set"
    target = _target(ctx, params, action)
    parameter = params.parameter.lower()
    if params.value_env is not None:
        new = _from_env(ctx, action, params.value_env, "value_env")
    else:
        new = params.value.get_secret_value() if params.value is not None else ""
    secrets = [new]
    client = _client(target, params.timeout_s)
    lines: list[str] = []
    undo: UndoRecord | None = None
    previous = ""
    try:
        found = await _call(params.timeout_s, lambda: client.config_get(parameter))
        if parameter not in found:
            raise ActionFailed(
                action,
                f"redis {target.shown}: no CONFIG parameter {parameter!r}",
                retryable=False,  # the server's parameters will not change before a retry
            )
        previous = str(found[parameter])
        secrets.append(previous)
        lines.append(f"CONFIG GET {parameter}: {_masked(parameter, previous)}")
        undo = _config_undo(params, target, previous, new)
        await _call(params.timeout_s, lambda: client.config_set(parameter, new))
        lines.append(f"CONFIG SET {parameter} {_masked(parameter, new)}: OK")
        after = await _call(params.timeout_s, lambda: client.config_get(parameter))
        verified = str(after.get(parameter)) == new
        lines.append(f"CONFIG GET {parameter}: {_masked(parameter, str(after.get(parameter)))}")
    except _failures() as exc:
        reason = _reason(exc, target, params.timeout_s, secrets)
        lines.append(f"failed: {reason}")
        # A failure after CONFIG SET was sent may still have changed the server: keep the undo.
        return ActionResult(
            ok=False,
            summary=f"redis {target.shown}: CONFIG SET {parameter} failed: {reason}",
            output="\n".join(lines),
            undo=undo,
            details={"url": target.shown, "parameter": parameter},
        )
    finally:
        await _close(client, params.timeout_s)

    shown_previous, shown_new = _masked(parameter, previous), _masked(parameter, new)
    detail = {
        "url": target.shown,
        "parameter": parameter,
        "previous": shown_previous,
        "value": shown_new,
        "changed": previous != new,
        "verified": verified,
    }
    metrics = {"redis.config_verified": 1.0 if verified else 0.0}
    summary = f"redis {target.shown}: {parameter} {shown_previous} -> {shown_new}"
    if not verified:
        summary += " (CONFIG GET does not show the new value)"
    return ActionResult(
        ok=verified,
        summary=summary,
        output="\n".join(lines),
        metrics=metrics,
        evidence=(_evidence(f"CONFIG SET {parameter}", detail, lines, metrics),),
        undo=undo,
        details=detail,
    )


def _mask_rules(rules: Sequence[str] | None) -> str:
    if rules is None:
        return "absent"
    return " ".join(f"{r[0]}{_MASK}" if _PASSWORD_RULE.match(r) else r for r in rules)


async def _acl_rules(client: redis.asyncio.Redis, user: str, timeout_s: float) -> list[str] | None:
    """The user's rules as ACL LIST gives them (reloadable by ACL SETUSER), None if absent."""
    listing = await _call(timeout_s, client.acl_list)
    prefix = f"user {user} "
    for line in map(str, listing):
        if line.startswith(prefix):
            return _ACL_TOKEN.findall(line[len(prefix) :])
    return None


async def _acl_change(
    ctx: ActionContext,
    params: RedisAclSetUserParams | RedisAclDelUserParams,
    action: str,
    rules: list[str],
    secrets: list[str],
) -> ActionResult:
    """ACL SETUSER ``params.user`` ``rules`` (or ACL DELUSER, for ``redis.acl_deluser``),
    with the ACL LIST line before and after as evidence and an undo restoring the former."""
    target = _target(ctx, params, action)
    user, deleting = params.user, action == "redis.acl_deluser"
    command = ["ACL", "DELUSER", user] if deleting else ["ACL", "SETUSER", user, *rules]
    shown_command = " ".join(command[:3]) + ("" if deleting else f" {_mask_rules(rules)}")
    client = _client(target, params.timeout_s)
    lines: list[str] = []
    undo: UndoRecord | None = None
    detail: dict[str, Any] = {"url": target.shown, "user": user}
    try:
        previous = await _acl_rules(client, user, params.timeout_s)
        detail["before"] = _mask_rules(previous)
        lines.append(f"before: {detail['before']}")
        connection = {**_undo_connection(target, params), "user": user}
        if previous is None:
            if not deleting:
                undo = UndoRecord("redis.acl_deluser", connection, f"delete {user}")
        else:
            restore = {**connection, "rules": [*_ACL_CLEAR, *previous]}
            undo = UndoRecord("redis.acl_setuser", restore, f"restore the ACL of {user}")
        if not (deleting and previous is None):
            reply = await _call(params.timeout_s, lambda: _command(client, command))
            lines.append(f"{shown_command}: {reply}")
        detail["after"] = _mask_rules(await _acl_rules(client, user, params.timeout_s))
        lines.append(f"after: {detail['after']}")
    except _failures() as exc:
        reason = _reason(exc, target, params.timeout_s, secrets)
        lines.append(f"failed: {reason}")
        return ActionResult(
            ok=False,
            summary=f"redis {target.shown}: {shown_command} failed: {reason}",
            output="\n".join(lines),
            undo=undo,  # the change may have been applied before the failure
            details=detail,
        )
    finally:
        await _close(client, params.timeout_s)
    metrics = {"redis.acl_user_exists": 0.0 if detail["after"] == "absent" else 1.0}
    return ActionResult(
        ok=True,
        summary=f"redis {target.shown}: ACL user {user}: {detail['before']} -> {detail['after']}",
        output="\n".join(lines),
        metrics=metrics,
        evidence=(_evidence(shown_command, detail, lines, metrics),),
        undo=undo,
        details=detail,
    )


async def _command(client: redis.asyncio.Redis, command: Sequence[str]) -> object:
    # redis-py leaves execute_command unannotated.
    return await client.execute_command(*command)  # type: ignore[no-untyped-call]


async def run_acl_setuser(ctx: ActionContext, params: RedisAclSetUserParams) -> ActionResult:
    """ACL SETUSER ``user`` ``rules``; the undo restores the previous rules (from ACL LIST)
    or deletes the user if it did not exist. Password rules are shown as ``>***``."""
    rules = list(params.rules)
    secrets = [rule[1:] for rule in rules if _PASSWORD_RULE.match(rule)]
    if params.user_password_env is not None:
        name = params.user_password_env
        secrets.append(_from_env(ctx, "redis.acl_setuser", name, "user_password_env"))
        rules.append(f">{secrets[-1]}")
    return await _acl_change(ctx, params, "redis.acl_setuser", rules, secrets)


async def run_acl_deluser(ctx: ActionContext, params: RedisAclDelUserParams) -> ActionResult:
    """ACL DELUSER ``user``; the undo recreates it with its previous rules. Deleting a user
    that does not exist succeeds and has nothing to undo."""
    return await _acl_change(ctx, params, "redis.acl_deluser", [], [])


def register(registry: ActionRegistry) -> None:
    """Add the Redis actions to ``registry``."""
    add = registry.register
    add("redis.probe", RedisProbeParams, "AUTH and PING, counting NOAUTH")(run_probe)
    add("redis.config_set", RedisConfigSetParams, "CONFIG SET, undoable")(run_config_set)
    add("redis.acl_setuser", RedisAclSetUserParams, "ACL SETUSER, undoable")(run_acl_setuser)
    add("redis.acl_deluser", RedisAclDelUserParams, "ACL DELUSER, undoable")(run_acl_deluser)
