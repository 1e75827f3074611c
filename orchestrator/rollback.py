"""Rolling a failed stream back: undo its completed steps, then run its rollback procedure.

Order: each completed step's undo in reverse completion order (the plan's ``undo:`` for the
step, else the undo record its action returned), then the stream's ``rollback.steps`` in
their order. Every one runs as a step like any other: under its class cap and its locks,
with retries. A step that still fails is reported loudly (``rollback_step_failed``) and the
procedure goes on with the rest, so a rollback never stops halfway in silence; it ends
``completed`` or ``incomplete``, with its duration measured against the plan's budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from pydantic import BaseModel, ValidationError

from agents.registry import ActionRegistry
from orchestrator.events import EventLog
from orchestrator.step_runner import StepJob, StepOutcome, StepRunner, StepStatus
from streams.model import StepSpec, StreamSpec

__all__ = ["RollbackReport", "roll_back"]

_diag = structlog.get_logger("orchestrator.rollback")

#: Builds the job for a step spec (its class, cap, locks, timeout...) with a given action,
#: parsed parameters, id and phase label.
JobFactory = Callable[[StepSpec, str, BaseModel, str, str], StepJob]


@dataclass(frozen=True, slots=True)
class RollbackReport:
    status: str  # "completed" | "incomplete" | "nothing to do"
    duration_s: float
    budget_s: float | None
    failed: tuple[str, ...]
    ran: tuple[str, ...]

    @property
    def within_budget(self) -> bool | None:
        return None if self.budget_s is None else self.duration_s <= self.budget_s

    def describe(self) -> str:
        if self.status == "nothing to do":
            return "nothing to roll back"
        budget = (
            ""
            if self.budget_s is None
            else (f" ({'within' if self.within_budget else 'OVER'} its {self.budget_s:g}s budget)")
        )
        text = f"rolled back in {self.duration_s:.3g}s{budget}"
        if self.failed:
            text = f"rollback INCOMPLETE, failed: {', '.join(self.failed)}; " + text
        return text


def _undo_of(
    step: StepSpec, outcome: StepOutcome | None, registry: ActionRegistry
) -> tuple[str, BaseModel] | str | None:
    """The undo action and parsed params for a completed step; a string says why none."""
    if step.undo is not None:
        action, params = step.undo.action, dict(step.undo.with_)
    elif outcome is not None and outcome.result is not None and outcome.result.undo:
        action, params = outcome.result.undo.action, dict(outcome.result.undo.params)
    else:
        return None
    try:
        return action, registry.get_action(action).params.model_validate(params)
    except (ValidationError, LookupError) as exc:
        return f"its undo ({action}) cannot run: {exc}"


async def roll_back(
    *,
    stream: StreamSpec,
    completed: Sequence[tuple[StepSpec, StepOutcome | None]],
    reason: str,
    runner: StepRunner,
    registry: ActionRegistry,
    params: Callable[[StepSpec], BaseModel],
    job: JobFactory,
    log: EventLog,
) -> RollbackReport:
    """Undo ``completed`` (in reverse) and run the stream's rollback steps; report how."""
    budget_s = stream.rollback.budget if stream.rollback else None
    undo_plan: list[tuple[StepSpec, str, BaseModel]] = []
    for step, outcome in reversed(completed):
        undo = _undo_of(step, outcome, registry)
        if isinstance(undo, str):
            log.emit(
                "rollback_step_failed",
                step=f"{step.id}.undo",
                agent=step.agent,
                reason=undo,
                level="error",
            )
        elif undo is not None:
            undo_plan.append((step, *undo))
    procedure = list(stream.rollback.steps) if stream.rollback else []
    if not undo_plan and not procedure:
        return RollbackReport("nothing to do", 0.0, budget_s, (), ())
    log.emit(
        "rollback_started",
        reason=reason,
        budget_s=budget_s,
        undo=[f"{s.id}.undo" for s, _, _ in undo_plan],
        steps=[s.id for s in procedure],
    )
    started = anyio.current_time()
    failed: list[str] = []
    ran: list[str] = []
    jobs: list[StepJob] = [
        job(step, action, p, f"{step.id}.undo", "undo") for step, action, p in undo_plan
    ]
    jobs += [job(step, step.action or "", params(step), step.id, "rollback") for step in procedure]
    for item in jobs:
        result = await runner.run(item, log)
        ran.append(item.step)
        if result.status is not StepStatus.SUCCEEDED:
            failed.append(item.step)
            # Loud on purpose: the system may be half-restored and someone must look.
            _diag.error(
                "rollback_step_failed",
                stream=stream.id,
                step=item.step,
                status=result.status.value,
                reason=result.reason,
            )
            log.emit(
                "rollback_step_failed",
                step=item.step,
                agent=item.agent,
                status=result.status.value,
                reason=result.reason,
                level="error",
            )
    report = RollbackReport(
        "incomplete" if failed else "completed",
        anyio.current_time() - started,
        budget_s,
        tuple(failed),
        tuple(ran),
    )
    fields: dict[str, Any] = {
        "status": report.status,
        "duration_s": round(report.duration_s, 6),
        "budget_s": budget_s,
        "within_budget": report.within_budget,
        "failed": list(failed),
        "reason": reason,
    }
    log.emit("rollback_finished", **fields)
    return report
