"""The PostgreSQL store's statements (the schema is in :mod:`orchestrator.store.migrations`).

The upserts apply the patches of :mod:`orchestrator.store._derive`: a patch changes a row
only if its seq is higher than the row's, a None leaves a field as it is, and a step patch
with a start or a later attempt replaces the attempt's fields.
"""

from __future__ import annotations

RUN_COLUMNS = (
    "run_id, plan, plan_source, plan_path, workdir, status, reason, created_at, started_at, "
    "finished_at, options, last_seq"
)
_FRESH = "(excluded.started_at IS NOT NULL OR excluded.attempt > st.attempt)"


def _attempt_field(name: str) -> str:
    return (
        f"{name} = CASE WHEN {_FRESH} THEN excluded.{name} "
        f"ELSE COALESCE(excluded.{name}, st.{name}) END"
    )


# One statement: insert the events, patch the run, upsert streams and steps, add history. A
# repeated event fails it whole (events_pkey), and the caller retries with only the new ones.
# Every part sees the tables as they were before the statement, so a verdict whose batch
# lacks the stream's start takes it from the stream's stored row (``s`` in history_rows).
APPEND = f"""
WITH ins AS (
    INSERT INTO events (run_id, seq, ts, event, body)
    SELECT $1, e.seq, e.ts, e.event, e.body
    FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::jsonb[])
        AS e(seq, ts, event, body)
    RETURNING 1
), run AS (
    UPDATE runs SET
        last_seq = GREATEST(last_seq, $6::bigint),
        status = COALESCE($7::text, status),
        started_at = COALESCE(started_at, $8::timestamptz),
        finished_at = CASE WHEN $10::boolean THEN $9::timestamptz
                           ELSE COALESCE($9::timestamptz, finished_at) END,
        reason = CASE WHEN $10::boolean THEN '' ELSE reason END
    WHERE run_id = $1
    RETURNING 1
), stream_rows AS (
    INSERT INTO streams AS s
        (run_id, stream, position, status, reason, started_at, finished_at, last_seq,
         signature, methodology)
    SELECT $1, p.stream, p.position, COALESCE(p.status, 'pending'), p.reason, p.started_at,
           p.finished_at, p.seq, p.signature, p.methodology
    FROM unnest($11::text[], $12::bigint[], $13::text[], $14::text[], $15::timestamptz[],
                $16::timestamptz[], $17::bigint[], $31::text[], $32::text[])
        AS p(stream, position, status, reason, started_at, finished_at, seq, signature,
             methodology)
    ON CONFLICT (run_id, stream) DO UPDATE SET
        status = excluded.status,
        reason = COALESCE(excluded.reason, s.reason),
        started_at = COALESCE(excluded.started_at, s.started_at),
        finished_at = COALESCE(excluded.finished_at, s.finished_at),
        signature = CASE WHEN excluded.started_at IS NOT NULL THEN excluded.signature
                         ELSE s.signature END,
        methodology = CASE WHEN excluded.started_at IS NOT NULL THEN excluded.methodology
                           ELSE s.methodology END,
        last_seq = excluded.last_seq
    WHERE s.last_seq < excluded.last_seq
    RETURNING 1
), step_rows AS (
    INSERT INTO steps AS st
        (run_id, stream, step, status, attempt, agent, resource_class, started_at,
         finished_at, duration_s, reason, exit_code, first_seq, last_seq)
    SELECT $1, p.* FROM unnest($18::text[], $19::text[], $20::text[], $21::int[], $22::text[],
                               $23::text[], $24::timestamptz[], $25::timestamptz[],
                               $26::float8[], $27::text[], $28::int[], $29::bigint[],
                               $30::bigint[]) AS p
    ON CONFLICT (run_id, stream, step) DO UPDATE SET
        status = excluded.status,
        attempt = GREATEST(excluded.attempt, st.attempt),
        agent = COALESCE(excluded.agent, st.agent),
        resource_class = COALESCE(excluded.resource_class, st.resource_class),
        {_attempt_field("started_at")},
        {_attempt_field("finished_at")},
        {_attempt_field("duration_s")},
        {_attempt_field("reason")},
        {_attempt_field("exit_code")},
        last_seq = excluded.last_seq
    WHERE st.last_seq < excluded.last_seq
    RETURNING 1
), history_rows AS (
    INSERT INTO stream_history
        (run_id, stream, signature, plan, methodology, status, duration_s, gate_confidence,
         finished_at, service_s, queued_s)
    SELECT $1, h.stream, v.signature, r.plan, v.methodology, h.status,
           EXTRACT(EPOCH FROM h.finished_at - v.started_at)::float8, h.gate_confidence,
           h.finished_at, h.service_s, h.queued_s
    FROM unnest($33::text[], $34::text[], $35::timestamptz[], $36::float8[],
                $37::timestamptz[], $38::text[], $39::text[], $40::float8[], $41::float8[])
        AS h(stream, status, finished_at, gate_confidence, started_at, signature, methodology,
             service_s, queued_s)
    JOIN runs r ON r.run_id = $1
    LEFT JOIN streams s ON s.run_id = $1 AND s.stream = h.stream
    CROSS JOIN LATERAL (
        SELECT CASE WHEN h.started_at IS NULL THEN s.started_at ELSE h.started_at END,
               CASE WHEN h.started_at IS NULL THEN s.signature ELSE h.signature END,
               CASE WHEN h.started_at IS NULL THEN s.methodology ELSE h.methodology END
    ) AS v(started_at, signature, methodology)
    WHERE v.signature IS NOT NULL
    ON CONFLICT (run_id, stream) DO NOTHING
    RETURNING 1
), fences AS (
    INSERT INTO lock_fences (resource, fence)
    SELECT f.resource, f.fence FROM unnest($42::text[], $43::bigint[]) AS f(resource, fence)
    ON CONFLICT (resource) DO UPDATE SET fence = GREATEST(lock_fences.fence, EXCLUDED.fence)
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins)
"""

LOCK_FENCES = "SELECT resource, fence FROM lock_fences"

SET_STATUS = """
UPDATE runs SET
    status = $2,
    reason = $3,
    started_at = CASE WHEN $4::boolean THEN COALESCE(started_at, $7::timestamptz)
                      ELSE started_at END,
    finished_at = CASE WHEN $5::boolean THEN COALESCE(finished_at, $7::timestamptz)
                       WHEN $6::boolean THEN NULL ELSE finished_at END
WHERE run_id = $1 AND ($8::text[] IS NULL OR status = ANY($8::text[]))
"""

CREATE_RUN = (
    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING true"
)
GET_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1"
#: Filters: $1 statuses, $2 plan, $3 created since (each NULL: any); $4 the limit. A run's
#: creation is never later than it started or finished (``orchestrator run`` records its
#: run after its first events; LEAST skips NULLs).
LIST_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE ($1::text[] IS NULL OR status = ANY($1)) "
    "AND ($2::text IS NULL OR plan = $2) "
    "AND ($3::timestamptz IS NULL OR LEAST(created_at, started_at, finished_at) >= $3) "
    "ORDER BY created_at DESC, run_id DESC LIMIT $4"
)
UNFINISHED_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE status = ANY($1::text[]) "
    # Runs that ``orchestrator run`` records while it runs are never a daemon's to resume
    # ($2: IN_PROCESS_ORIGIN).
    "AND COALESCE(options->>'origin', '') <> $2 "
    "ORDER BY created_at, run_id"
)
STREAMS = (
    "SELECT run_id, stream, status, reason, started_at, finished_at FROM streams "
    "WHERE run_id = $1 ORDER BY position, stream"
)
STEPS = (
    "SELECT st.run_id, st.stream, st.step, st.status, st.attempt, st.agent, "
    "st.resource_class, st.started_at, st.finished_at, st.duration_s, st.reason, "
    "st.exit_code FROM steps st LEFT JOIN streams s "
    "ON s.run_id = st.run_id AND s.stream = st.stream WHERE st.run_id = $1 "
    "ORDER BY s.position NULLS LAST, st.stream, st.first_seq"
)
READ_EVENTS = "SELECT body FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
STEP_FINISHED = "SELECT body FROM events WHERE run_id = $1 AND event = 'step_finished' ORDER BY seq"

HISTORY = """
SELECT signature, run_id, stream, plan, methodology, status, duration_s, gate_confidence,
       finished_at, service_s, queued_s
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY signature ORDER BY finished_at DESC, run_id DESC) AS n
    FROM stream_history WHERE signature = ANY($1::text[])
) latest
WHERE n <= $2
ORDER BY signature, finished_at, run_id
"""
