"""Decoding the replies of the Redis backend's Lua scripts (see :mod:`._scripts`).

Scripts reply with JSON, written by Redis's cjson (which writes an empty Lua table as ``{}``
whether it stood for a list or a mapping) or put together by the scripts themselves; the
scripts write large numbers as strings (fencing tokens and microsecond times need more
digits than cjson keeps). Fences travel as arrays, one token per lock of the need, in the
need's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from orchestrator.coordination.base import (
    Blocker,
    CoordinationSnapshot,
    HolderInfo,
    WaiterInfo,
)

__all__ = ["Note", "as_dict", "as_list", "blockers", "fences", "note", "notes", "snapshot"]

#: A grant made for a waiter: (holder, grant id, fencing tokens in the order of its need's
#: locks, grant time in us).
Note = tuple[str, str, list[int], int]


def as_list(value: Any) -> list[Any]:
    """A JSON array, or [] for cjson's empty table."""
    if isinstance(value, str):
        value = orjson.loads(value)
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object, or {} for anything else."""
    if isinstance(value, str):
        value = orjson.loads(value)
    return value if isinstance(value, dict) else {}


def tokens(value: Any) -> list[int]:
    """Fencing tokens from a JSON array of token strings, one per lock of the need."""
    return [int(token) for token in as_list(value)]


def fences(locks: Sequence[str], value: Any) -> dict[str, int]:
    """``{lock: token}`` for a need's ``locks`` from the JSON array of their tokens."""
    return dict(zip(locks, tokens(value), strict=True))


def note(value: Any) -> Note:
    """One grant note (a JSON object, or its text from a process's inbox)."""
    n = as_dict(value)
    return (n["h"], n["g"], tokens(n["f"]), int(n["t"]))


def notes(raw: Any) -> list[Note]:
    """The grants a script made for waiters of the calling process."""
    return [note(n) for n in as_list(raw)]


def blockers(raw: Any) -> tuple[Blocker, ...]:
    return tuple(
        Blocker(resource=b["r"], holders=tuple(as_list(b["h"])), reason=b["why"])
        for b in as_list(raw)
    )


def _pairs(flat: list[Any]) -> list[tuple[str, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def snapshot(reply: list[Any]) -> CoordinationSnapshot:
    """Decode the SNAPSHOT script's reply: now, holders, waiters, usage, fences."""
    now_us = int(reply[0])
    holders = []
    for holder, raw in _pairs(reply[1]):
        rec = orjson.loads(raw)
        locks = tuple(as_list(rec["l"]))
        holders.append(
            HolderInfo(
                holder=holder,
                resource_class=rec["c"],
                locks=locks,
                fences=fences(locks, rec["f"]),
                held_s=(now_us - int(rec["t"])) / 1e6,
                labels=as_dict(rec["lab"]),
            )
        )
    holders.sort(key=lambda h: (-h.held_s, h.holder))  # in grant order, as in memory.py
    waiters = []
    for holder, raw in _pairs(reply[2]):
        rec = orjson.loads(raw)
        waiters.append(
            WaiterInfo(
                holder=holder,
                resource_class=rec["c"],
                locks=tuple(as_list(rec["l"])),
                priority=int(rec["pr"]),
                waited_s=(now_us - int(rec["e"]) + int(rec["cr"])) / 1e6,
                labels=as_dict(rec["lab"]),
            )
        )
    return CoordinationSnapshot(
        holders=tuple(holders),
        waiters=tuple(waiters),
        class_usage={cls: int(n) for cls, n in _pairs(reply[3])},
        # "<token>" or "<token> <holder>" (see the prelude)
        fences={lock: int(value.split(" ", 1)[0]) for lock, value in _pairs(reply[4])},
    )
