"""Shared state, per-run state and run event streams on Redis, and the retrying call.

:class:`RedisSharedState` is the base of
:class:`~orchestrator.coordination.redis.RedisCoordinator`: it owns the clients once they
are connected and runs every Redis call under a deadline, retrying while Redis is
unreachable. Values are JSON. Keys, under the namespace prefix::

    s              hash    shared state: key -> "<version>:<writer nonce>:<JSON>"
    run:<run_id>   hash    per-run state: field -> JSON (e.g. "step:<stream>/<step>")
    ev:<run_id>    stream  a run's events, capped at about ``events_maxlen`` entries

Run hashes and streams expire ``retention_s`` after their last write.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import orjson
import redis
import redis.asyncio
import structlog

from foundation.errors import CoordinatorUnavailable
from orchestrator.coordination.base import VersionedValue
from orchestrator.coordination.redis._conn import TRANSIENT, redact_url, unavailable
from orchestrator.events import event_line

__all__ = ["RedisSharedState"]

T = TypeVar("T")

#: Backoff between retries while Redis is unreachable: following a stream, one call.
_RETRY_FIRST_S, _CALL_RETRY_FIRST_S, _RETRY_MAX_S = 0.05, 0.02, 1.0

#: KEYS[1] a run's event stream; ARGV: its MAXLEN (approximate), its expiry in ms, then the
#: events' JSON in order. Appends each (the stream capped as it grows), renews the expiry
#: and returns the last entry's id: one round trip, atomic, for a whole batch.
_APPEND_EVENTS = """
local id
for i = 3, #ARGV do
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return id
"""


class RedisSharedState:
    """Shared state, run state and events of one namespace (module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        op_timeout_s: float,
        block_s: float,
        events_maxlen: int,
        retention_s: float,
    ) -> None:
        self._url = url
        self.where = redact_url(url)
        # A hash tag: every key of a namespace would map to one cluster slot (only
        # standalone Redis is supported and tested so far).
        self._prefix = "{" + namespace + "}:"
        self._route = self._prefix + "route"
        self._op_timeout_s = op_timeout_s
        self._block_s = block_s
        self._events_maxlen = events_maxlen
        self._retention_ms = round(retention_s * 1000)
        self._client: redis.asyncio.Redis | None = None
        self._blocking: redis.asyncio.Redis | None = None
        self._cas_script: Any = None
        self._append_script: Any = None
        self._outage_since: float | None = None
        self._log = structlog.get_logger().bind(coordinator=self.where)

    # -- shared state -----------------------------------------------------------------------

    async def state_get(self, key: str) -> VersionedValue | None:
        """Return the shared value under ``key``, or None if it was never written."""
        client = self._require_open()
        _, raw = await self._call(
            lambda: client.hget(self._prefix + "s", key), grace_s=self._op_timeout_s
        )
        if raw is None:
            return None
        version, _, data = str(raw).split(":", 2)
        return VersionedValue(value=orjson.loads(data), version=int(version))

    async def state_cas(self, key: str, value: Any, *, expected_version: int) -> int | None:
        """Write ``value`` (JSON-serialisable) if the version is ``expected_version``.

        Returns the new version, or None if another writer got there first.
        """
        self._require_open()
        args = [
            self._prefix,
            key,
            str(expected_version),
            secrets.token_hex(6),
            orjson.dumps(value).decode(),
        ]
        _, version = await self._call(
            lambda: self._cas_script(keys=[self._route], args=args), grace_s=self._op_timeout_s
        )
        return None if int(version) < 0 else int(version)

    # -- per-run state ----------------------------------------------------------------------

    async def run_state_set(self, run_id: str, field: str, value: Any) -> None:
        """Set one field (``stream:<id>``, ``step:<stream>/<step>``, ``agent:<name>``...)."""
        client = self._require_open()
        key = self._prefix + "run:" + run_id
        data = orjson.dumps(value).decode()

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(key, field, data)
                pipe.pexpire(key, self._retention_ms)
                await pipe.execute()

        await self._call(write, grace_s=self._op_timeout_s)

    async def run_state_get(self, run_id: str) -> dict[str, Any]:
        """Every field of a run's state (empty if none was written, or it expired)."""
        client = self._require_open()
        key = self._prefix + "run:" + run_id
        _, raw = await self._call(lambda: client.hgetall(key), grace_s=self._op_timeout_s)
        return {str(field): orjson.loads(value) for field, value in raw.items()}

    # -- run events -------------------------------------------------------------------------

    async def append_event(self, run_id: str, event: Mapping[str, Any]) -> str:
        """Append ``event`` to the run's stream and return its stream id.

        At least once: a retry after a lost reply may append it twice.
        """
        client = self._require_open()
        key = self._prefix + "ev:" + run_id
        data = orjson.dumps(dict(event)).decode()

        async def write() -> str:
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(key, {"e": data}, maxlen=self._events_maxlen, approximate=True)
                pipe.pexpire(key, self._retention_ms)
                entry_id, _ = await pipe.execute()
            return str(entry_id)

        _, entry_id = await self._call(write, grace_s=self._op_timeout_s)
        return entry_id

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> str:
        """Append ``events``, in order, to the run's stream with one script call (an XADD
        each, capped at ``events_maxlen``, then the expiry renewed) and return the last
        one's stream id ("" for no events). An :class:`~orchestrator.events.EventRecord`'s
        JSON line is reused, not made again.

        At least once: a retry after a lost reply may append the batch twice.
        """
        if not events:
            return ""
        client = self._require_open()
        if self._append_script is None:  # EVALSHA; loads the script again if Redis lost it
            self._append_script = client.register_script(_APPEND_EVENTS)
        script, key = self._append_script, self._prefix + "ev:" + run_id
        args = [self._events_maxlen, self._retention_ms, *(event_line(e) for e in events)]
        _, entry_id = await self._call(
            lambda: script(keys=[key], args=args), grace_s=self._op_timeout_s
        )
        return str(entry_id)

    async def follow_events(
        self, run_id: str, from_start: bool = False
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield the run's events as they are appended, forever (cancel to stop).

        ``from_start`` first yields every event still in the stream. Rides out Redis
        outages; if Redis lost the stream meanwhile, it follows the new stream from its start.
        """
        client = self._require_open()
        key = self._prefix + "ev:" + run_id
        last = "0-0"
        if not from_start:
            _, newest = await self._call(
                lambda: client.xrevrange(key, count=1), grace_s=self._op_timeout_s
            )
            last = str(newest[0][0]) if newest else "0-0"
        while True:
            entries, last = await self._read_events(key, last)
            for entry_id, fields in entries:
                last = entry_id
                yield orjson.loads(fields["e"])

    async def _read_events(self, key: str, last: str) -> tuple[list[Any], str]:
        client, blocking = self._require_open(), self._blocking
        assert blocking is not None
        delay = _RETRY_FIRST_S
        while True:
            try:
                with anyio.fail_after(self._block_s + self._op_timeout_s):
                    reply = await blocking.xread(
                        {key: last}, count=500, block=round(self._block_s * 1000)
                    )
                if isinstance(reply, dict):  # RESP3
                    return [e for batch in reply.values() for e in batch[0]], last
                return [e for _, batch in reply or [] for e in batch], last
            except redis.AuthenticationError as exc:
                raise self._unavailable(exc) from None
            except TRANSIENT:
                await anyio.sleep(delay)
                delay = min(2 * delay, _RETRY_MAX_S)
                # Redis may have come back empty: the new stream's ids start below ours.
                try:
                    with anyio.fail_after(self._op_timeout_s):
                        newest = await client.xrevrange(key, count=1)
                except TRANSIENT:
                    continue
                if not newest or _id(str(newest[0][0])) < _id(last):
                    last = "0-0"

    # -- calls ------------------------------------------------------------------------------

    def _require_open(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise CoordinatorUnavailable(
                self.where,
                "the coordinator is not connected",
                "use it inside `async with RedisCoordinator(...)`",
            )
        return self._client

    async def _call(self, call: Callable[[], Awaitable[T]], *, grace_s: float) -> tuple[float, T]:
        """Run ``call`` on the main client, retrying while Redis is unreachable.

        The deadline of each attempt is the client's own: it was built with connect and
        reply timeouts (``op_timeout_s``), which bound connecting, sending and reading, so
        no cancel scope is added here (on the hot path it would cost more than the call's
        own Python overhead). Returns the monotonic time just before the call was sent, and
        its reply. Raises CoordinatorUnavailable at once for an authentication failure, and
        once Redis has been unreachable for ``grace_s``. Every call retried here is
        idempotent (event appends are at least once).
        """
        give_up = time.monotonic() + grace_s
        delay = _CALL_RETRY_FIRST_S
        while True:
            sent = time.monotonic()
            try:
                reply = await call()
            except redis.AuthenticationError as exc:
                raise self._unavailable(exc) from None
            except TRANSIENT as exc:
                if self._outage_since is None:
                    self._outage_since = sent
                    self._log.warning("coordinator_unreachable", error=type(exc).__name__)
                if time.monotonic() + delay > give_up:
                    raise self._unavailable(exc) from None
                await anyio.sleep(delay)
                delay = min(2 * delay, _RETRY_MAX_S)
                continue
            except redis.ResponseError as exc:  # refused (ACL, memory): retrying will not help
                raise self._unavailable(exc) from None
            if self._outage_since is not None:
                self._log.info(
                    "coordinator_reconnected",
                    down_s=round(time.monotonic() - self._outage_since, 3),
                )
                self._outage_since = None
            return sent, reply

    def _unavailable(self, exc: BaseException) -> CoordinatorUnavailable:
        return unavailable(self.where, exc, url=self._url, timeout_s=self._op_timeout_s)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
