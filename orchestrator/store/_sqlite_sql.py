"""The SQLite store's statements (the schema is in :mod:`orchestrator.store.migrations`).

The upserts apply the patches of :mod:`orchestrator.store._derive`: a patch changes a row
only if its seq is higher than the row's, a None leaves a field as it is, and a step patch
with a start or a later attempt replaces the attempt's fields.

A batch's events and step patches go in by many rows per statement (:class:`Rows`):
``executemany`` releases the GIL around each row's step, so with the event loop busy every
row waited for the loop to hand the GIL back, and a 17,500-event batch took over a second of
wall time while the next batch piled up in memory. (The same held for a batch's last rows,
one statement each, until they went by powers of two.) (A JSON array read with ``json_each``
does the same in one statement but costs more CPU, and ends text at a NUL.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

RUN_COLUMNS = (
    "run_id, plan, plan_source, plan_path, workdir, status, reason, created_at, started_at, "
    "finished_at, options, last_seq"
)


@dataclass(frozen=True, slots=True)
class Rows:
    """An INSERT of ``width`` columns, by many rows a statement: ``per`` rows at most (its
    parameters under 999, SQLite's oldest limit). :meth:`counts` splits a batch into
    statements: full ones, then the rest by powers of two, so a batch of any size is a few
    statements (a rest of up to 198 rows is at most 7) and the statements' texts are few (SQLite's
    statement cache keeps them)."""

    head: str
    row: str
    tail: str
    per: int

    def statement(self, count: int) -> str:
        """The INSERT of ``count`` rows (1 to :attr:`per`)."""
        return _statement(self, count)

    def counts(self, total: int) -> list[int]:
        """The row counts of the statements that insert ``total`` rows, in order."""
        full, rest = divmod(total, self.per)
        return [self.per] * full + [
            1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1
        ]


@functools.lru_cache(maxsize=32)
def _statement(rows: Rows, count: int) -> str:
    return f"{rows.head} VALUES {', '.join([rows.row] * count)} {rows.tail}"


def _rows(insert: str, width: int, tail: str) -> Rows:
    return Rows(insert, "(" + ", ".join("?" * width) + ")", tail, 999 // width)


INSERT_EVENTS = _rows(
    "INSERT INTO events (run_id, seq, ts, event, body)",
    5,
    "ON CONFLICT (run_id, seq) DO NOTHING",
)
#: The seqs of a batch's range that are stored already.
STORED_SEQS = "SELECT seq FROM events WHERE run_id = ? AND seq BETWEEN ? AND ?"
PATCH_RUN = """
UPDATE runs SET
    status = COALESCE(:status, status),
    started_at = COALESCE(started_at, :started_at),
    finished_at = CASE WHEN :clear THEN :finished_at
                       ELSE COALESCE(:finished_at, finished_at) END,
    reason = CASE WHEN :clear THEN '' ELSE reason END,
    last_seq = max(last_seq, :seq)
WHERE run_id = :run_id
"""
UPSERT_STREAM = """
INSERT INTO streams (run_id, stream, position, status, reason, started_at, finished_at, last_seq,
                     signature, methodology)
VALUES (?, ?, ?, COALESCE(?, 'pending'), ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, stream) DO UPDATE SET
    status = excluded.status,
    reason = COALESCE(excluded.reason, streams.reason),
    started_at = COALESCE(excluded.started_at, streams.started_at),
    finished_at = COALESCE(excluded.finished_at, streams.finished_at),
    signature = CASE WHEN excluded.started_at IS NOT NULL THEN excluded.signature
                     ELSE streams.signature END,
    methodology = CASE WHEN excluded.started_at IS NOT NULL THEN excluded.methodology
                       ELSE streams.methodology END,
    last_seq = excluded.last_seq
WHERE streams.last_seq < excluded.last_seq
"""
#: A stream's stored start, signature and methodology, for a verdict whose batch lacks them.
STREAM_START = (
    "SELECT started_at, signature, methodology FROM streams WHERE run_id = ? AND stream = ?"
)
INSERT_HISTORY = """
INSERT INTO stream_history (run_id, stream, signature, plan, methodology, status, duration_s,
                            gate_confidence, finished_at, service_s, queued_s)
SELECT run_id, ?, ?, plan, ?, ?, ?, ?, ?, ?, ? FROM runs WHERE run_id = ?
ON CONFLICT (run_id, stream) DO NOTHING
"""
HISTORY_COLUMNS = (
    "signature, run_id, stream, plan, methodology, status, duration_s, gate_confidence, "
    "finished_at, service_s, queued_s"
)
# A patch with a start, or of a later attempt, replaces the attempt's fields (see _derive).
_FRESH = "(excluded.started_at IS NOT NULL OR excluded.attempt > steps.attempt)"
_INSERT_STEP = """
INSERT INTO steps (run_id, stream, step, status, attempt, agent, resource_class, started_at,
                   finished_at, duration_s, reason, exit_code, first_seq, last_seq)
"""
_STEP_CONFLICT = f"""
ON CONFLICT (run_id, stream, step) DO UPDATE SET
    status = excluded.status,
    attempt = max(excluded.attempt, steps.attempt),
    agent = COALESCE(excluded.agent, steps.agent),
    resource_class = COALESCE(excluded.resource_class, steps.resource_class),
    started_at = CASE WHEN {_FRESH} THEN excluded.started_at
                      ELSE COALESCE(excluded.started_at, steps.started_at) END,
    finished_at = CASE WHEN {_FRESH} THEN excluded.finished_at
                       ELSE COALESCE(excluded.finished_at, steps.finished_at) END,
    duration_s = CASE WHEN {_FRESH} THEN excluded.duration_s
                      ELSE COALESCE(excluded.duration_s, steps.duration_s) END,
    reason = CASE WHEN {_FRESH} THEN excluded.reason
                  ELSE COALESCE(excluded.reason, steps.reason) END,
    exit_code = CASE WHEN {_FRESH} THEN excluded.exit_code
                     ELSE COALESCE(excluded.exit_code, steps.exit_code) END,
    last_seq = excluded.last_seq
WHERE steps.last_seq < excluded.last_seq
"""
UPSERT_STEPS = _rows(_INSERT_STEP, 14, _STEP_CONFLICT)

SET_STATUS = """
UPDATE runs SET
    status = :status,
    reason = :reason,
    started_at = CASE WHEN :running THEN COALESCE(started_at, :now) ELSE started_at END,
    finished_at = CASE WHEN :finished THEN COALESCE(finished_at, :now)
                       WHEN :unfinished THEN NULL ELSE finished_at END
WHERE run_id = :run_id
"""
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
LIST_RUNS = f"SELECT {RUN_COLUMNS} FROM runs"
#: A run's creation as ``list_runs(since=...)`` reads it: never later than it started or
#: finished (``orchestrator run`` records its run after its first events).
RUN_CREATED = "min(created_at, COALESCE(started_at, created_at), COALESCE(finished_at, created_at))"
#: Runs that ``orchestrator run`` records while it runs are never a daemon's to resume
#: (the parameter: ``IN_PROCESS_ORIGIN``).
NOT_IN_PROCESS = "COALESCE(json_extract(options, '$.origin'), '') <> ?"
STREAMS = (
    "SELECT run_id, stream, status, reason, started_at, finished_at FROM streams "
    "WHERE run_id = ? ORDER BY position, stream"
)
STEPS = (
    "SELECT st.run_id, st.stream, st.step, st.status, st.attempt, st.agent, "
    "st.resource_class, st.started_at, st.finished_at, st.duration_s, st.reason, "
    "st.exit_code FROM steps st LEFT JOIN streams s "
    "ON s.run_id = st.run_id AND s.stream = st.stream WHERE st.run_id = ? "
    "ORDER BY s.position NULLS LAST, st.stream, st.first_seq"
)
READ_EVENTS = "SELECT body FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?"
STEP_FINISHED = "SELECT body FROM events WHERE run_id = ? AND event = 'step_finished' ORDER BY seq"


def history_query(signatures: int) -> str:
    """The latest ``?`` (a limit) rows of each of ``signatures`` (as many ``?``), oldest first."""
    marks = ", ".join("?" * signatures)
    return (
        f"SELECT {HISTORY_COLUMNS} FROM (SELECT {HISTORY_COLUMNS}, row_number() OVER "
        "(PARTITION BY signature ORDER BY finished_at DESC, run_id DESC) AS n "
        f"FROM stream_history WHERE signature IN ({marks})) WHERE n <= ? "
        "ORDER BY signature, finished_at, run_id"
    )


UPSERT_FENCE = """
INSERT INTO lock_fences (resource, fence) VALUES (?, ?)
ON CONFLICT (resource) DO UPDATE SET fence = max(fence, excluded.fence)
"""
LOCK_FENCES = "SELECT resource, fence FROM lock_fences"
