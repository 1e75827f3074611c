"""Connections of the Redis backend: clients, URL redaction and error translation.

The URL carries the credentials (``redis://:PASSWORD@host:6379/0`` or
``redis://USER:PASSWORD@...`` for an ACL user) and the transport (``rediss://`` for TLS,
with redis-py's ``ssl_*`` query parameters). Only :func:`redact_url`'s form of it ever
appears in a log line or an error (:func:`foundation.secrets.redact_url`, re-exported here).
"""

from __future__ import annotations

import redis
import redis.asyncio
from redis.backoff import NoBackoff

from foundation.errors import CoordinatorUnavailable
from foundation.secrets import redact_url, scrub, url_password, url_secrets

__all__ = [
    "TRANSIENT",
    "async_client",
    "redact_url",
    "sync_client",
    "unavailable",
]

#: Failures that may pass once Redis is back: worth a retry within the outage grace.
TRANSIENT: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    TimeoutError,
    OSError,
)


def unavailable(
    where: str, exc: BaseException, *, url: str, timeout_s: float
) -> CoordinatorUnavailable:
    """Translate a redis-py failure into a CoordinatorUnavailable naming ``where`` and a fix."""
    text = str(exc)
    text = scrub(text, url_secrets(url))
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        if url_password(url) is None:
            return CoordinatorUnavailable(
                where,
                "the server requires a password and the URL has none",
                "put it in the URL: redis://:PASSWORD@host:port/0, or "
                "redis://USER:PASSWORD@host:port/0 for an ACL user",
            )
        return CoordinatorUnavailable(
            where,
            "authentication failed: wrong password, or unknown or disabled user",
            "check the user and password in the URL against the server's requirepass or ACL",
        )
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):
        return CoordinatorUnavailable(
            where,
            f"no answer within {timeout_s:g}s",
            "check that the host and port are right and reachable, and that rediss:// (TLS) "
            "is used exactly when the server expects TLS",
        )
    if isinstance(exc, (redis.ConnectionError, OSError)):
        return CoordinatorUnavailable(
            where,
            f"cannot connect: {text}",
            "check that redis-server runs at this host and port",
        )
    if isinstance(exc, redis.exceptions.NoPermissionError) or "NOPERM" in text:
        return CoordinatorUnavailable(
            where,
            f"the user may not do what the coordinator needs: {text}",
            "give the ACL user scripting (EVALSHA, SCRIPT LOAD), INFO and the hash, sorted "
            "set, list and stream commands on the keys {NAMESPACE}:*",
        )
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM" in text:
        return CoordinatorUnavailable(
            where,
            "Redis is out of memory",
            "raise maxmemory, or free memory; keep maxmemory-policy at noeviction",
        )
    if isinstance(exc, redis.ResponseError):
        return CoordinatorUnavailable(
            where, f"Redis refused: {text}", "check the Redis server's configuration and log"
        )
    return CoordinatorUnavailable(
        where,
        f"unexpected answer: {text}",
        "check that the URL points at a Redis server (6.2 or newer)",
    )


def async_client(
    url: str, *, connect_timeout_s: float, reply_timeout_s: float | None
) -> redis.asyncio.Redis:
    """An asyncio client; it does not retry by itself, the caller owns retries and deadlines.

    ``reply_timeout_s=None`` is for blocking reads (BLPOP, XREAD BLOCK), whose callers put
    their own deadline around each call.
    """
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=reply_timeout_s,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
        client_name="orchestrator",
    )


def sync_client(url: str, *, io_timeout_s: float) -> redis.Redis:
    """The renewal thread's own client: every connect and reply bounded by ``io_timeout_s``."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=io_timeout_s,
        socket_timeout=io_timeout_s,
        retry=redis.retry.Retry(NoBackoff(), 0),
        client_name="orchestrator-renewer",
    )
