"""Store rows to records, for both backends: the queries return the same columns in the same
order; only timestamps differ (SQLite keeps ISO text, asyncpg gives datetimes), so each
backend passes its converter."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from orchestrator.step_output import StepOutput, step_output
from orchestrator.store.base import (
    HistoryRecord,
    RunRecord,
    StepRecord,
    StreamRecord,
    check_status,
)

__all__ = ["history_record", "run_record", "select_outputs", "step_record", "stream_record"]

Timestamp = Callable[[Any], datetime | None]


class Row(Protocol):
    """A result row read by position: a sqlite3 tuple or an asyncpg Record."""

    def __getitem__(self, index: int, /) -> Any: ...


def _required(ts: Timestamp, value: Any) -> datetime:
    converted = ts(value)
    if converted is None:  # the schema says NOT NULL
        raise ValueError("a required timestamp is missing")
    return converted


def run_record(row: Row, ts: Timestamp) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        plan=row[1],
        plan_source=row[2],
        plan_path=None if row[3] is None else Path(row[3]),
        workdir=Path(row[4]),
        status=check_status(row[5]),
        reason=row[6],
        created_at=_required(ts, row[7]),
        started_at=ts(row[8]),
        finished_at=ts(row[9]),
        options=orjson.loads(row[10]),
        last_seq=row[11],
    )


def stream_record(row: Row, ts: Timestamp) -> StreamRecord:
    return StreamRecord(row[0], row[1], row[2], row[3] or "", ts(row[4]), ts(row[5]))


def step_record(row: Row, ts: Timestamp) -> StepRecord:
    return StepRecord(
        run_id=row[0],
        stream=row[1],
        step=row[2],
        status=row[3],
        attempt=row[4],
        agent=row[5],
        resource_class=row[6],
        started_at=ts(row[7]),
        finished_at=ts(row[8]),
        duration_s=row[9],
        reason=row[10] or "",
        exit_code=row[11],
    )


def history_record(row: Row, ts: Timestamp) -> HistoryRecord:
    return HistoryRecord(
        signature=row[0],
        run_id=row[1],
        stream=row[2],
        plan=row[3],
        methodology=row[4],
        status=row[5],
        duration_s=row[6],
        gate_confidence=row[7],
        finished_at=_required(ts, row[8]),
        service_s=row[9],
        queued_s=row[10],
    )


def select_outputs(
    bodies: Iterable[Mapping[str, Any]], stream: str | None, step: str | None
) -> list[StepOutput]:
    """The output tails of ``step_finished`` event bodies, of ``stream``/``step`` if given."""
    found = []
    for body in bodies:
        out = step_output(body)
        if out is None or (stream is not None and out.stream != stream):
            continue
        if step is None or out.step == step:
            found.append(out)
    return found
