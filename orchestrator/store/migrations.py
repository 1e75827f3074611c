"""The run store's schema, as ordered migrations per backend.

Each backend applies, at open and in one transaction, the migrations whose version is above
the highest in its ``schema_migrations`` table, recording each; a store whose version is
higher than the code knows is refused (an older orchestrator must not write a newer
schema). Migrations are never edited once released: a change is a new version, in both
lists, with the same number.

Status values are checked by the code (``orchestrator.store.base.RUN_STATUSES``), not by
CHECK constraints, so that adding a status never needs a table rebuild on SQLite.

Planned (not yet here): evidence, stream history, context packages.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.store.errors import StoreError

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION",
    "SQLITE_MIGRATIONS",
    "Migration",
    "pending_migrations",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """Schema version ``version``: its statements, run in order inside one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, events, streams, steps",
        (
            """
            CREATE TABLE runs (
                run_id      TEXT PRIMARY KEY,
                plan        TEXT NOT NULL,
                plan_source TEXT NOT NULL,
                plan_path   TEXT,
                workdir     TEXT NOT NULL,
                status      TEXT NOT NULL,
                reason      TEXT NOT NULL DEFAULT '',
                created_at  TEXT NOT NULL,
                started_at  TEXT,
                finished_at TEXT,
                options     TEXT NOT NULL DEFAULT '{}',
                last_seq    INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX runs_by_created ON runs (created_at, run_id)",
            """
            CREATE INDEX runs_unfinished ON runs (created_at)
                WHERE status IN ('queued', 'running')
            """,
            """
            CREATE TABLE events (
                run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                seq    INTEGER NOT NULL,
                ts     TEXT NOT NULL,
                event  TEXT NOT NULL,
                body   TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )
            """,
            """
            CREATE TABLE streams (
                run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                stream      TEXT NOT NULL,
                position    INTEGER NOT NULL,
                status      TEXT NOT NULL,
                reason      TEXT,
                started_at  TEXT,
                finished_at TEXT,
                last_seq    INTEGER NOT NULL,
                PRIMARY KEY (run_id, stream)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE steps (
                run_id         TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                stream         TEXT NOT NULL,
                step           TEXT NOT NULL,
                status         TEXT NOT NULL,
                attempt        INTEGER NOT NULL DEFAULT 0,
                agent          TEXT,
                resource_class TEXT,
                started_at     TEXT,
                finished_at    TEXT,
                duration_s     REAL,
                reason         TEXT,
                exit_code      INTEGER,
                first_seq      INTEGER NOT NULL,
                last_seq       INTEGER NOT NULL,
                PRIMARY KEY (run_id, stream, step)
            ) WITHOUT ROWID
            """,
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, events, streams, steps",
        (
            """
            CREATE TABLE runs (
                run_id      TEXT PRIMARY KEY,
                plan        TEXT NOT NULL,
                plan_source TEXT NOT NULL,
                plan_path   TEXT,
                workdir     TEXT NOT NULL,
                status      TEXT NOT NULL,
                reason      TEXT NOT NULL DEFAULT '',
                created_at  TIMESTAMPTZ NOT NULL,
                started_at  TIMESTAMPTZ,
                finished_at TIMESTAMPTZ,
                options     JSONB NOT NULL DEFAULT '{}',
                last_seq    BIGINT NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX runs_by_created ON runs (created_at, run_id)",
            """
            CREATE INDEX runs_unfinished ON runs (created_at)
                WHERE status IN ('queued', 'running')
            """,
            """
            CREATE TABLE events (
                run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                seq    BIGINT NOT NULL,
                ts     TIMESTAMPTZ NOT NULL,
                event  TEXT NOT NULL,
                body   JSONB NOT NULL,
                PRIMARY KEY (run_id, seq)
            )
            """,
            """
            CREATE TABLE streams (
                run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                stream      TEXT NOT NULL,
                position    BIGINT NOT NULL,
                status      TEXT NOT NULL,
                reason      TEXT,
                started_at  TIMESTAMPTZ,
                finished_at TIMESTAMPTZ,
                last_seq    BIGINT NOT NULL,
                PRIMARY KEY (run_id, stream)
            )
            """,
            """
            CREATE TABLE steps (
                run_id         TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
                stream         TEXT NOT NULL,
                step           TEXT NOT NULL,
                status         TEXT NOT NULL,
                attempt        INTEGER NOT NULL DEFAULT 0,
                agent          TEXT,
                resource_class TEXT,
                started_at     TIMESTAMPTZ,
                finished_at    TIMESTAMPTZ,
                duration_s     DOUBLE PRECISION,
                reason         TEXT,
                exit_code      INTEGER,
                first_seq      BIGINT NOT NULL,
                last_seq       BIGINT NOT NULL,
                PRIMARY KEY (run_id, stream, step)
            )
            """,
        ),
    ),
)

#: The schema version this code writes; both lists end at it (a test checks).
SCHEMA_VERSION = SQLITE_MIGRATIONS[-1].version


def pending_migrations(
    where: str, current: int, migrations: tuple[Migration, ...]
) -> tuple[Migration, ...]:
    """The migrations above ``current``; StoreError if ``current`` is newer than the code."""
    known = migrations[-1].version
    if current > known:
        raise StoreError(
            where,
            f"its schema is version {current}, newer than this orchestrator knows ({known})",
            "upgrade the orchestrator to the version that wrote this store, or use another "
            "store (a new --store path or database)",
        )
    return tuple(m for m in migrations if m.version > current)
