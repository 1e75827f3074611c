"""A stream's service time and queueing time, for history and predictions.

A stream's wall time (``stream_started`` to ``stream_finished``) includes waiting for caps,
locks and GPUs. Fed back into a simulation under the same caps and locks, that waiting
would be counted twice. So each step's time is split (see
:class:`~orchestrator.step_runner.StepOutcome`): ``queued_s`` waiting for its grant,
``service_s`` the rest. A stream's ``service_s`` is the longest chain of its succeeded
steps' service times along ``needs`` (what the stream takes with no contention at all, the
quantity the simulation spreads over the steps), and its ``queued_s`` the sum of its steps'
queueing. Both are recorded on ``stream_finished`` and kept in the stream's history row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from streams.model import StepSpec, StreamSpec
from streams.validation import effective_needs

if TYPE_CHECKING:
    from orchestrator.step_runner import StepOutcome

__all__ = ["stream_timing"]


def stream_timing(
    stream: StreamSpec, completed: Sequence[tuple[StepSpec, StepOutcome | None]]
) -> dict[str, float]:
    """``{"service_s": ..., "queued_s": ...}`` of the stream's succeeded steps; empty when
    a step succeeded before a resume (its times are not known here) or none succeeded."""
    service: dict[str, float] = {}
    queued = 0.0
    for step, outcome in completed:
        if outcome is None:
            return {}
        service[step.id] = outcome.service_s
        queued += outcome.queued_s
    if not service:
        return {}
    needs = effective_needs(stream.steps)
    chain: dict[str, float] = {}
    for step in stream.steps:  # needs point backwards or across; resolve lazily
        _chain(step.id, needs, service, chain)
    return {"service_s": round(max(chain.values()), 6), "queued_s": round(queued, 6)}


def _chain(
    step: str,
    needs: dict[str, tuple[str, ...]],
    service: dict[str, float],
    chain: dict[str, float],
) -> float:
    if step in chain:
        return chain[step]
    before = max((_chain(n, needs, service, chain) for n in needs.get(step, ())), default=0.0)
    chain[step] = before + service.get(step, 0.0)
    return chain[step]
