"""``orchestrator daemon`` with every run-store call timed, for ``benchmarks/daemon.py``.

The daemon is the real one (``orchestrator.cli``'s ``daemon`` command, same settings from the
``ORCH_`` environment); the only change is that the store ``run_daemon`` opens is wrapped in
:class:`TimedStore`, which delegates every call and records its start (wall clock), duration
and, for ``append_events``, the batch: how many events and how many of them are step
transitions. The records are written as JSON to ``$BENCH_STORE_TIMINGS`` when the store
closes (graceful shutdown). The wrapper costs two clock reads and a list append per call.

Usage (what the benchmark runs)::

    BENCH_STORE_TIMINGS=/tmp/x.json python benchmarks/_daemon_child.py daemon
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orchestrator.daemon.service as daemon_module
from orchestrator.cli import main
from orchestrator.store import RunStore, open_store

__all__ = ["TimedStore"]

#: One call: method, wall-clock start (time.time()), seconds, events, step events, run id.
Record = tuple[str, float, float, int, int, str]


class TimedStore:
    """A RunStore that times each call of the store it wraps; see the module doc."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self.records: list[Record] = []

    @property
    def where(self) -> str:
        return self._store.where

    async def append_events(self, run_id: str, events: Sequence[Mapping[str, Any]]) -> int:
        steps = sum(1 for e in events if str(e.get("event", "")).startswith("step_"))
        began, start = time.time(), time.perf_counter()
        try:
            return await self._store.append_events(run_id, events)
        finally:
            self.records.append(
                ("append_events", began, time.perf_counter() - start, len(events), steps, run_id)
            )

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr) or name.startswith("_") or name == "aclose":
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            began, start = time.time(), time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self.records.append((name, began, time.perf_counter() - start, 0, 0, ""))

        return timed

    def dump(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(self.records))


def _timed(open_store: Callable[..., Any], out: Path) -> Callable[..., Any]:
    @asynccontextmanager
    async def open_timed(*args: Any, **kwargs: Any) -> AsyncIterator[TimedStore]:
        async with open_store(*args, **kwargs) as store:
            timed = TimedStore(store)
            try:
                yield timed
            finally:
                timed.dump(out)

    return open_timed


if __name__ == "__main__":
    target = os.environ.get("BENCH_STORE_TIMINGS")
    if target:
        # run_daemon looks open_store up in its module at call time: wrap it there.
        # setattr: mypy sees no exported open_store in orchestrator.daemon.service.
        setattr(daemon_module, "open_store", _timed(open_store, Path(target)))  # noqa: B010
    sys.argv[0] = "orchestrator"
    main()
