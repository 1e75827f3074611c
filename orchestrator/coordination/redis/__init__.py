"""The Redis coordination backend: :class:`RedisCoordinator` and its private parts.

Owns everything that speaks to Redis for coordination: the coordinator (:mod:`.coordinator`),
the shared state, run state and event streams it inherits (:mod:`._state`), connections and
their errors (:mod:`._conn`), the hot path of acquire and release scripts on connections of
its own, pipelined under bursts (:mod:`._hot`), leases and their renewal thread
(:mod:`._leases`), the grant inbox thread (:mod:`._inbox`), the Lua scripts (``lua/*.lua``,
loaded by :mod:`._scripts`) and the decoding of their replies (:mod:`._replies`). Modules
prefixed ``_`` are private to this package.

Must not import the scheduler, the daemon, the CLI or other parts of ``orchestrator``
besides :mod:`orchestrator.coordination.base` (the contract it implements); below it only
:mod:`foundation` and :mod:`agents.processes` (to tell step processes their lease deadlines).
"""

from orchestrator.coordination.redis.coordinator import RedisCoordinator, redact_url

__all__ = ["RedisCoordinator", "redact_url"]
