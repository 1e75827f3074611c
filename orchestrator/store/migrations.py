"""The run store's schema, as ordered migrations per backend.

Each backend applies, at open and in one transaction, the migrations whose version is above
the highest in its ``schema_migrations`` table, recording each; a store whose version is
higher than the code knows is refused (an older orchestrator must not write a newer
schema). Migrations are never edited once released: a change is a new version, in both
lists, with the same number.

Status values are checked by the code (``orchestrator.store.base.RUN_STATUSES``), not by
CHECK constraints, so that adding a status never needs a table rebuild on SQLite.

Version 2 adds stream history: ``streams`` learns each stream's ``signature`` and
``methodology`` (from ``stream_started``), and ``stream_history`` keeps one row per stream that
ran to a verdict (see :mod:`orchestrator.store._derive`), backfilled from the stored events of
runs recorded before it existed.

Version 3 adds ``lock_fences``: the highest fencing token the daemon recorded for each lock
(from ``step_started`` events' ``fences``), so an in-process coordinator started by the next
daemon continues above it instead of at 1; backfilled from the stored events.

Version 4 splits a stream's time in its history (see :mod:`orchestrator.service_time`):
``service_s`` (its longest chain of step service times) and ``queued_s`` (its steps' waits
for caps, locks and GPUs), both from ``stream_finished``; NULL for verdicts recorded before.

Planned (not yet here): evidence, context packages.
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
    Migration(
        2,
        "stream history",
        (
            "ALTER TABLE streams ADD COLUMN signature TEXT",
            "ALTER TABLE streams ADD COLUMN methodology TEXT",
            # No foreign key to runs: history is what outlives a run's detailed records.
            """
            CREATE TABLE stream_history (
                run_id          TEXT NOT NULL,
                stream          TEXT NOT NULL,
                signature       TEXT NOT NULL,
                plan            TEXT NOT NULL,
                methodology     TEXT,
                status          TEXT NOT NULL,
                duration_s      REAL,
                gate_confidence REAL,
                finished_at     TEXT NOT NULL,
                PRIMARY KEY (run_id, stream)
            ) WITHOUT ROWID
            """,
            """
            CREATE INDEX stream_history_by_signature
                ON stream_history (signature, finished_at)
            """,
            # Backfill from the events of runs recorded before: each verdict with the
            # stream's latest start before it. Times are stored as fixed-width UTC text
            # (YYYY-MM-DDTHH:MM:SS.ffffffZ), so whole seconds and microseconds are exact
            # (strftime('%s'), not unixepoch(): that needs SQLite 3.38).
            """
            INSERT INTO stream_history (run_id, stream, signature, plan, methodology, status,
                                        duration_s, gate_confidence, finished_at)
            SELECT f.run_id, json_extract(f.body, '$.stream'),
                   json_extract(st.body, '$.signature'), r.plan,
                   json_extract(st.body, '$.methodology'), json_extract(f.body, '$.status'),
                   ((CAST(strftime('%s', substr(f.ts, 1, 19)) AS INTEGER)
                     - CAST(strftime('%s', substr(st.ts, 1, 19)) AS INTEGER)) * 1000000
                    + CAST(substr(f.ts, 21, 6) AS INTEGER)
                    - CAST(substr(st.ts, 21, 6) AS INTEGER)) / 1000000.0,
                   CASE WHEN json_type(f.body, '$.gate.confidence') IN ('integer', 'real')
                        THEN json_extract(f.body, '$.gate.confidence') END,
                   f.ts
            FROM events f
            JOIN runs r ON r.run_id = f.run_id
            JOIN events st ON st.run_id = f.run_id AND st.seq = (
                SELECT max(s.seq) FROM events s
                WHERE s.run_id = f.run_id AND s.event = 'stream_started' AND s.seq < f.seq
                  AND json_extract(s.body, '$.stream') = json_extract(f.body, '$.stream'))
            WHERE f.event = 'stream_finished'
              AND json_extract(f.body, '$.status') IN ('succeeded', 'failed')
              AND json_type(f.body, '$.stream') = 'text'
              AND json_type(st.body, '$.signature') = 'text'
            ON CONFLICT (run_id, stream) DO NOTHING
            """,
        ),
    ),
    Migration(
        3,
        "lock fences",
        (
            """
            CREATE TABLE lock_fences (
                resource TEXT PRIMARY KEY,
                fence    INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
            """
            INSERT INTO lock_fences (resource, fence)
            SELECT f.key, max(f.value)
            FROM events e,
                 json_each(CASE WHEN json_type(e.body, '$.fences') = 'object'
                                THEN json_extract(e.body, '$.fences') ELSE '{}' END) f
            WHERE e.event = 'step_started' AND f.type = 'integer'
            GROUP BY f.key
            """,
        ),
    ),
    Migration(
        4,
        "service and queueing time in stream history",
        (
            "ALTER TABLE stream_history ADD COLUMN service_s REAL",
            "ALTER TABLE stream_history ADD COLUMN queued_s REAL",
            # Backfill from each verdict's stream_finished, where it recorded them.
            *(
                f"""
                UPDATE stream_history SET {column} = (
                    SELECT json_extract(e.body, '$.{column}') FROM events e
                    WHERE e.run_id = stream_history.run_id AND e.event = 'stream_finished'
                      AND json_extract(e.body, '$.stream') = stream_history.stream
                      AND json_type(e.body, '$.{column}') IN ('integer', 'real')
                    ORDER BY e.seq DESC LIMIT 1)
                """
                for column in ("service_s", "queued_s")
            ),
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
    Migration(
        2,
        "stream history",
        (
            "ALTER TABLE streams ADD COLUMN signature TEXT",
            "ALTER TABLE streams ADD COLUMN methodology TEXT",
            # No foreign key to runs: history is what outlives a run's detailed records.
            """
            CREATE TABLE stream_history (
                run_id          TEXT NOT NULL,
                stream          TEXT NOT NULL,
                signature       TEXT NOT NULL,
                plan            TEXT NOT NULL,
                methodology     TEXT,
                status          TEXT NOT NULL,
                duration_s      DOUBLE PRECISION,
                gate_confidence DOUBLE PRECISION,
                finished_at     TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (run_id, stream)
            )
            """,
            """
            CREATE INDEX stream_history_by_signature
                ON stream_history (signature, finished_at)
            """,
            # Backfill from the events of runs recorded before: each verdict with the
            # stream's latest start before it.
            """
            INSERT INTO stream_history (run_id, stream, signature, plan, methodology, status,
                                        duration_s, gate_confidence, finished_at)
            SELECT f.run_id, f.body->>'stream', st.body->>'signature', r.plan,
                   st.body->>'methodology', f.body->>'status',
                   EXTRACT(EPOCH FROM f.ts - st.ts)::float8,
                   CASE WHEN jsonb_typeof(f.body->'gate'->'confidence') = 'number'
                        THEN (f.body->'gate'->>'confidence')::float8 END,
                   f.ts
            FROM events f
            JOIN runs r ON r.run_id = f.run_id
            JOIN LATERAL (
                SELECT s.ts, s.body FROM events s
                WHERE s.run_id = f.run_id AND s.event = 'stream_started' AND s.seq < f.seq
                  AND s.body->>'stream' = f.body->>'stream'
                ORDER BY s.seq DESC LIMIT 1
            ) st ON true
            WHERE f.event = 'stream_finished'
              AND f.body->>'status' IN ('succeeded', 'failed')
              AND jsonb_typeof(f.body->'stream') = 'string'
              AND jsonb_typeof(st.body->'signature') = 'string'
            ON CONFLICT (run_id, stream) DO NOTHING
            """,
        ),
    ),
    Migration(
        3,
        "lock fences",
        (
            """
            CREATE TABLE lock_fences (
                resource TEXT PRIMARY KEY,
                fence    BIGINT NOT NULL
            )
            """,
            """
            INSERT INTO lock_fences (resource, fence)
            SELECT f.key, max((f.value #>> '{}')::bigint)
            FROM events e,
                 jsonb_each(CASE WHEN jsonb_typeof(e.body->'fences') = 'object'
                                 THEN e.body->'fences' ELSE '{}'::jsonb END) f
            WHERE e.event = 'step_started' AND jsonb_typeof(f.value) = 'number'
            GROUP BY f.key
            """,
        ),
    ),
    Migration(
        4,
        "service and queueing time in stream history",
        (
            "ALTER TABLE stream_history ADD COLUMN service_s DOUBLE PRECISION",
            "ALTER TABLE stream_history ADD COLUMN queued_s DOUBLE PRECISION",
            *(
                f"""
                UPDATE stream_history h SET {column} = (
                    SELECT (e.body->>'{column}')::float8 FROM events e
                    WHERE e.run_id = h.run_id AND e.event = 'stream_finished'
                      AND e.body->>'stream' = h.stream
                      AND jsonb_typeof(e.body->'{column}') = 'number'
                    ORDER BY e.seq DESC LIMIT 1)
                """
                for column in ("service_s", "queued_s")
            ),
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
