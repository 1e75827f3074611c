"""``undo.sequence``: several undo records run in order, as one (an LLM agent's step).

An agent's step may change several things through its tool calls; each call leaves an undo
record, and the step's result carries one ``undo.sequence`` of them, the last change first,
so that a rollback undoes what the agent did in reverse (:func:`undo_of` makes it). It
stops at the first undo that fails and says which.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionRegistry

__all__ = ["UndoSequenceParams", "register", "undo_of"]


class UndoStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str
    params: dict[str, Any] = Field(default_factory=dict)


class UndoSequenceParams(BaseModel):
    """The undo records to run, in this order."""

    model_config = ConfigDict(extra="forbid")

    steps: list[UndoStep] = Field(min_length=1)


def undo_of(records: list[UndoRecord]) -> UndoRecord | None:
    """One record undoing every change of ``records`` (an agent's tool calls, in the order
    made), the last first: None for none, the record itself for one, else ``undo.sequence``."""
    if not records:
        return None
    if len(records) == 1:
        return records[0]
    steps = [{"action": r.action, "params": dict(r.params)} for r in reversed(records)]
    return UndoRecord(
        "undo.sequence",
        {"steps": steps},
        f"undo {len(records)} changes of the agent, the last first",
    )


def register(registry: ActionRegistry) -> None:
    """Add ``undo.sequence`` (running actions of ``registry``) to ``registry``."""

    async def run_sequence(ctx: ActionContext, params: UndoSequenceParams) -> ActionResult:
        evidence: list[Evidence] = []
        for i, step in enumerate(params.steps, 1):
            action = registry.get_action(step.action)
            result = await action.run(ctx, action.params.model_validate(step.params))
            evidence.extend(result.evidence)
            if not result.ok:
                return ActionResult(
                    ok=False,
                    summary=f"undo {i} of {len(params.steps)} ({step.action}) failed: "
                    f"{result.summary}",
                    evidence=tuple(evidence),
                )
        return ActionResult(
            ok=True, summary=f"undid {len(params.steps)} changes", evidence=tuple(evidence)
        )

    registry.register("undo.sequence", UndoSequenceParams, "run several undo records in order")(
        run_sequence
    )
