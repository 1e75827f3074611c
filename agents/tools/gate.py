"""The tool gate: every tool call of an LLM agent goes through the daemon here.

:meth:`ToolGate.call` runs one call of one agent session (:class:`ToolSession`, one agent,
one step attempt) and always returns a :class:`ToolOutcome` whose ``message`` is what the
model is told; it never raises for what the model did wrong. In order:

1. Scope: a tool outside the agent's ``can`` never runs: ``refused``, naming the scope.
2. Parameters: validated by the action's model (``error`` with pydantic's reasons, values
   left out); a path that is absolute, holds ``..`` or leads through a symlink: ``refused``
   (out of the working directory, or out of the plan's declared root a ``file.*`` call
   names with ``root``; an undeclared root is refused too).
3. Stale writes: an action with an ``expected_version`` parameter gets the version this
   session last saw of the call's resource (:class:`~agents.tools.ledger.ReadLedger`),
   whatever the model passed; the action refuses with ``stale`` when the file differs.
4. Locks: the resources the call touches (``ActionDef.resources``) are acquired all or
   nothing with fencing tokens through the :class:`~agents.tools.ports.LockService`, waiting
   at most ``lock_wait_s``; still held by another call: ``busy``, try again. Nothing is held
   while waiting for anything else, so calls cannot deadlock. They are released after the
   call, also on cancellation.
5. The action runs with the call's fences added to the step's. Its evidence and UndoRecord
   are kept on the session (so rollback can undo an agent's changes in reverse), and the
   versions it reports (``details["versions"]``) are learnt by the ledger.
6. A ``tool_called`` event: stream, step, agent, tool, arguments (secrets masked, long
   strings cut), status ``ok|error|refused|busy|stale``, duration_s, fences, summary.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ValidationError

from agents.actions.file_paths import PathRefused
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry
from agents.tools.ledger import ReadLedger
from agents.tools.ports import CallLease, LockService, ToolEvents
from foundation.errors import ActionFailed
from foundation.secrets import mask_secrets, scrub_known

__all__ = ["ToolGate", "ToolOutcome", "ToolSession", "ToolStatus"]

ToolStatus = Literal["ok", "error", "refused", "busy", "stale"]
#: Longest string argument copied into a tool_called event.
_EVENT_STRING = 200
_RELEASE_GRACE_S = 10.0


@dataclass(slots=True)
class ToolSession:
    """One agent's tool calls within one step attempt: its context (who, where, the step's
    fences), its scope, its read ledger, and what its calls left behind."""

    context: ActionContext
    can: frozenset[str]
    ledger: ReadLedger = field(default_factory=ReadLedger)
    undo: list[UndoRecord] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    outcomes: list[ToolOutcome] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """How one call ended: ``message`` is the model's tool result."""

    tool: str
    status: ToolStatus
    message: str
    result: ActionResult | None = None
    fences: Mapping[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) <= _EVENT_STRING:
            return value
        return f"{value[:_EVENT_STRING]}... ({len(value)} characters)"
    if isinstance(value, Mapping):
        return {k: _bounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v) for v in value]
    return value


def _validation_message(tool: str, exc: ValidationError) -> str:
    reasons = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
        for e in exc.errors(include_input=False, include_url=False)
    )
    return f"{tool}: invalid arguments: {reasons}"


def _status_of(result: ActionResult) -> ToolStatus:
    if result.ok:
        return "ok"
    said = result.details.get("status")
    return said if said in ("stale", "refused") else "error"


def _message(result: ActionResult) -> str:
    return f"{result.summary}\n{result.output}" if result.output else result.summary


class ToolGate:
    """Runs agents' tool calls under scope, per-call locks, the stale-write guard, evidence
    and undo (see the module doc). ``stale_guard=False`` leaves writes unguarded (the tests
    use it to show the lost update it prevents)."""

    def __init__(
        self,
        registry: ActionRegistry,
        locks: LockService,
        events: ToolEvents,
        *,
        lock_wait_s: float = 5.0,
        stale_guard: bool = True,
    ) -> None:
        self._registry = registry
        self._locks = locks
        self._events = events
        self._lock_wait_s = lock_wait_s
        self._stale_guard = stale_guard
        self._seq = itertools.count(1)
        # Holders are unique across gates too (several daemons share a Redis coordinator).
        self._id = secrets.token_hex(4)

    async def call(
        self, session: ToolSession, tool: str, arguments: Mapping[str, Any]
    ) -> ToolOutcome:
        """Run one call; see the module doc. Cancellation passes through (locks released)."""
        started = time.monotonic()
        outcome = await self._call(session, tool, arguments)
        outcome = replace(outcome, duration_s=round(time.monotonic() - started, 6))
        session.outcomes.append(outcome)
        ctx = session.context
        self._events.emit(
            "tool_called",
            run_id=ctx.run_id,
            stream=ctx.stream,
            step=ctx.step,
            agent=ctx.agent,
            attempt=ctx.attempt,
            tool=tool,
            arguments=_bounded(mask_secrets(dict(arguments))),
            status=outcome.status,
            duration_s=outcome.duration_s,
            fences=dict(outcome.fences),
            summary=scrub_known(outcome.message.split("\n", 1)[0][:_EVENT_STRING]),
        )
        return outcome

    async def _call(
        self, session: ToolSession, tool: str, arguments: Mapping[str, Any]
    ) -> ToolOutcome:
        ctx = session.context
        if tool not in session.can:
            scope = ", ".join(sorted(session.can)) or "nothing"
            return ToolOutcome(
                tool,
                "refused",
                f"{tool} is outside the scope of agent {ctx.agent!r} (it may use: {scope}); "
                "the attempt was recorded",
            )
        action = self._registry.get(tool)
        if action is None:
            return ToolOutcome(tool, "error", f"{tool}: no such action in this daemon")
        try:
            params: BaseModel = action.params.model_validate(dict(arguments))
            resources = action.resources_of(params)
        except PathRefused as exc:
            return ToolOutcome(tool, "refused", f"{tool} refused: {exc}")
        except ValidationError as exc:
            return ToolOutcome(tool, "error", _validation_message(tool, exc))
        if self._stale_guard and resources and "expected_version" in type(params).model_fields:
            expected = session.ledger.expected(resources[0])
            params = params.model_copy(update={"expected_version": expected})
        lease: CallLease | None = None
        if resources:
            call = f"call-{self._id}-{next(self._seq)}"
            holder = f"{ctx.run_id}/{ctx.stream}/{ctx.step}/{ctx.agent}/{call}"
            lease = await self._locks.acquire_many(holder, resources, timeout_s=self._lock_wait_s)
            if lease is None:
                return ToolOutcome(
                    tool,
                    "busy",
                    f"busy, try again: {', '.join(resources)} is in use by another call "
                    f"(waited {self._lock_wait_s:g}s)",
                )
        fences = dict(lease.fences) if lease is not None else {}
        try:
            call_ctx = replace(ctx, fences={**ctx.fences, **fences})
            result = await action.run(call_ctx, params)
        except ActionFailed as exc:
            return ToolOutcome(tool, "error", f"{tool} failed: {exc.reason}", fences=fences)
        except OSError as exc:
            return ToolOutcome(
                tool, "error", f"{tool} failed: {exc.strerror or exc}", fences=fences
            )
        finally:
            if lease is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_RELEASE_GRACE_S):
                    await self._locks.release(lease)
        status = _status_of(result)
        if result.ok:
            versions = result.details.get("versions")
            if isinstance(versions, Mapping):
                session.ledger.learn(versions)
            session.evidence.extend(result.evidence)
            if result.undo is not None:
                session.undo.append(result.undo)
        return ToolOutcome(tool, status, _message(result), result, fences)
