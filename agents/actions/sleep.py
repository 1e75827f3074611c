"""``sleep``: wait a while. For plans that model work by its duration, and for benchmarks."""

from __future__ import annotations

import anyio
from pydantic import BaseModel, ConfigDict

from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from streams.durations import Duration

__all__ = ["SleepParams", "register", "run_sleep"]


class SleepParams(BaseModel):
    """Parameters of ``sleep``: ``seconds`` (a number or a duration such as ``50ms``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: Duration = 0.0
    fail: bool = False


async def run_sleep(ctx: ActionContext, params: SleepParams) -> ActionResult:
    """Sleep ``seconds``; with ``fail: true`` report failure afterwards (for drills)."""
    await anyio.sleep(params.seconds)
    verdict = "failed on purpose" if params.fail else "done"
    return ActionResult(
        ok=not params.fail,
        summary=f"slept {params.seconds:g}s, {verdict}",
        metrics={"slept_s": params.seconds},
    )


def register(registry: ActionRegistry) -> None:
    """Add ``sleep`` to ``registry``."""
    registry.register("sleep", SleepParams, "wait a while")(run_sleep)
