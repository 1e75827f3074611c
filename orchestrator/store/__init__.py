"""The durable run store: every run, its events and the state derived from them.

Open one with :func:`open_store` (SQLite by default, PostgreSQL for a ``postgresql://``
DSN); both backends implement :class:`RunStore`.

Owns the schema and its migrations, both backends and what is derived from stored events
(history, verdicts, fences). Must not import the scheduler, the daemon, the CLI or the
coordination backends: it stores what they tell it. ``streams`` and ``foundation`` are
allowed.
"""

from orchestrator.store._dsn import redact_dsn
from orchestrator.store._open import open_store, store_location
from orchestrator.store.base import (
    FINISHED_STATUSES,
    IN_PROCESS_ORIGIN,
    RUN_STATUSES,
    UNFINISHED_STATUSES,
    HistoryRecord,
    RunRecord,
    RunStatus,
    RunStore,
    StepRecord,
    StreamRecord,
)
from orchestrator.store.errors import DiskFull, StoreError, StoreUnavailable
from orchestrator.store.migrations import SCHEMA_VERSION

__all__ = [
    "FINISHED_STATUSES",
    "IN_PROCESS_ORIGIN",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "UNFINISHED_STATUSES",
    "DiskFull",
    "HistoryRecord",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StepRecord",
    "StoreError",
    "StoreUnavailable",
    "StreamRecord",
    "open_store",
    "redact_dsn",
    "store_location",
]
