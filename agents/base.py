"""What an action receives and returns.

An action is an async function registered by name (see :mod:`agents.registry`). It gets an
:class:`ActionContext` and its validated parameters and returns an :class:`ActionResult`.
It reports an expected failure by returning ``ok=False`` or raising
:class:`~foundation.errors.ActionFailed`; the scheduler turns both into a failed attempt.
Timeouts and cancellation arrive as anyio cancellation: an action cleans up what it started
(a subprocess, a connection) in ``finally`` and lets the cancellation through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ActionContext",
    "ActionResult",
    "Evidence",
    "SharedState",
    "UndoRecord",
    "Usage",
]


class SharedState(Protocol):
    """The coordinator's key/value space with versions (in-process, or in Redis so that
    several daemons share it). ``state_get`` returns an object with ``value`` and
    ``version`` or None; ``state_cas`` writes if the version is still ``expected_version``
    (0: absent) and returns the new version, or None if someone else wrote first."""

    async def state_get(self, key: str) -> Any: ...

    async def state_cas(self, key: str, value: Any, *, expected_version: int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class ActionContext:
    """Who runs the step, with which grants, and where.

    ``fences`` maps each lock the step holds to its fencing token: an action that writes to
    the protected resource passes it along so stale writers can be refused. ``env`` is the
    complete environment a subprocess gets (nothing else from the daemon leaks in).
    ``kill_grace_s`` is how long a terminated subprocess gets before it is killed.
    ``file_roots`` are the folders besides ``workdir`` that file actions may use.
    """

    run_id: str
    stream: str
    step: str
    agent: str
    attempt: int
    fences: Mapping[str, int]
    env: Mapping[str, str]
    workdir: Path
    kill_grace_s: float = 5.0
    state: SharedState | None = None
    #: The plan's usable file roots by name (``files.roots``), for ``file.*``'s ``root``.
    file_roots: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence: what was checked, where it came from, what it showed.

    ``source`` names the kind (``command``, ``query``, ``http``, ``docker``, ``redis``,
    ``nvml``, ``agent``) and ``detail`` its particulars (argv and exit code, the query, the
    URL and status...). ``excerpt`` is bounded; ``sha256`` is of the full output it came from.
    ``verified`` is True when the daemon's own action collected it, False when an external
    agent only claims it. ``id`` is the stream evidence requirement it provides, if any
    (filled in by the scheduler from the step's ``evidence:`` list).
    """

    check: str
    source: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    excerpt: str = ""
    sha256: str | None = None
    metrics: Mapping[str, float | str] = field(default_factory=dict)
    verified: bool = True
    at: str = ""
    id: str | None = None


@dataclass(frozen=True, slots=True)
class UndoRecord:
    """How to revert what an action changed: another action and its parameters (for
    example ``redis.config_set`` with the previous value). The plan's own ``undo:`` for the
    step, if any, takes precedence."""

    action: str
    params: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """What a step cost in model calls: tokens in and out and the number of requests. Zero
    for built-in actions and external processes; LLM drivers fill it in."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.requests + other.requests,
        )

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.requests)

    def as_event(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
        }


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action did: ``summary`` in one line, a bounded ``output`` excerpt, the
    ``metrics`` it measured (name -> number or string), the ``evidence`` it collected,
    how to ``undo`` its change (None: nothing to undo), extra ``details`` and the model
    ``usage`` it cost (zero unless an LLM driver performed it)."""

    ok: bool
    summary: str
    exit_code: int | None = None
    output: str = ""
    output_sha256: str | None = None
    output_bytes: int = 0
    metrics: Mapping[str, float | str] = field(default_factory=dict)
    evidence: tuple[Evidence, ...] = ()
    undo: UndoRecord | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
