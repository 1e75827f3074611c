"""What the run page shows beside the terminal's view, folded from a run's events.

:class:`~orchestrator.progress.RunView` (the fold ``orchestrator watch`` uses) gives each
stream's progress; this adds, per stream, whether it is rolling back and, per waiting step,
who holds what it waits for *now*; and per agent, the steps it finished and the model tokens
it used (``step_finished.usage``). A step waits on what ``step_waiting.blocked_on`` names; the
holder shown is the step of this run that holds that lock or slot at the latest event (so it
follows a lock from holder to holder), and the holders the event named for a lock held
outside this run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.token_usage import tokens_by_kind

__all__ = ["AgentUsage", "RunState", "Wait", "fold_run_state"]


@dataclass(frozen=True, slots=True)
class Wait:
    """One thing a step waits for (a lock, or ``class:<name>`` for a class slot)."""

    resource: str
    holders: tuple[str, ...]


@dataclass(slots=True)
class AgentUsage:
    steps: int = 0
    tokens: dict[str, int] = field(default_factory=dict)  # kind (input, output, ...) -> count


@dataclass(slots=True)
class _Running:
    resource_class: str
    locks: tuple[str, ...]


@dataclass(slots=True)
class RunState:
    run_id: str = ""
    rolling_back: set[str] = field(default_factory=set)  # streams rolling back now
    rolled_back: dict[str, str] = field(default_factory=dict)  # stream -> rollback status
    blocked: dict[tuple[str, str], tuple[Wait, ...]] = field(default_factory=dict)
    agents: dict[str, AgentUsage] = field(default_factory=dict)
    gates: dict[str, str] = field(default_factory=dict)  # stream -> "passed at 97%", ...
    _running: dict[str, _Running] = field(default_factory=dict)  # "stream/step" -> holds

    def apply(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        stream, step = event.get("stream"), event.get("step")
        if name == "run_started":
            self.run_id = str(event.get("run_id") or "")
        if not isinstance(stream, str):
            if name in ("run_finished", "run_suspended"):
                self.blocked.clear()
                self._running.clear()
                self.rolling_back.clear()
            return
        key = (stream, str(step))
        if name == "rollback_started":
            self.rolling_back.add(stream)
        elif name in ("rollback_finished", "rollback_abandoned"):
            self.rolling_back.discard(stream)
            self.rolled_back[stream] = str(event.get("status") or "abandoned")
        elif name == "gate_evaluated":
            confidence = event.get("confidence")
            at = f" at {confidence:.0%}" if isinstance(confidence, float) else ""
            self.gates[stream] = ("passed" if event.get("passed") else "failed") + at
        elif name == "stream_finished":
            self.rolling_back.discard(stream)
            self.blocked = {k: v for k, v in self.blocked.items() if k[0] != stream}
        elif name == "step_waiting":
            self.blocked[key] = tuple(_waits(event.get("blocked_on"), self.run_id))
        elif name == "step_started":
            self.blocked.pop(key, None)
            locks = event.get("locks")
            self._running[f"{stream}/{step}"] = _Running(
                str(event.get("resource_class") or ""),
                tuple(str(x) for x in locks) if isinstance(locks, list) else (),
            )
        elif name in ("step_finished", "step_skipped"):
            self.blocked.pop(key, None)  # a cancelled waiter's wait goes with it
            self._running.pop(f"{stream}/{step}", None)
            if name == "step_finished":
                self._count(event)

    def _count(self, event: Mapping[str, Any]) -> None:
        agent = event.get("agent")
        if not isinstance(agent, str) or not agent:
            return
        usage = self.agents.setdefault(agent, AgentUsage())
        usage.steps += 1
        for kind, n in tokens_by_kind(event.get("usage")).items():
            usage.tokens[kind] = usage.tokens.get(kind, 0) + n

    def holders_now(self, wait: Wait) -> tuple[str, ...]:
        """Who holds ``wait.resource`` at the latest event (see module doc)."""
        if wait.resource.startswith("class:"):
            cls = wait.resource.removeprefix("class:")
            mine = [k for k, r in self._running.items() if r.resource_class == cls]
        else:
            mine = [k for k, r in self._running.items() if wait.resource in r.locks]
        return tuple(mine) or wait.holders

    def waits_of(self, stream: str) -> list[tuple[str, Wait, tuple[str, ...]]]:
        """``(step, wait, holders now)`` for each thing each waiting step of ``stream``
        waits for."""
        return [
            (step, wait, self.holders_now(wait))
            for (sid, step), waits in self.blocked.items()
            if sid == stream
            for wait in waits
        ]


def _waits(blocked_on: Any, run_id: str) -> Iterable[Wait]:
    if not isinstance(blocked_on, list):
        return
    for item in blocked_on:
        if isinstance(item, Mapping) and isinstance(item.get("resource"), str):
            holders = item.get("holders")
            names = [str(h) for h in holders] if isinstance(holders, list) else []
            # Holders of this run are shown as stream/step, as the terminal view does.
            yield Wait(
                item["resource"],
                tuple(h.removeprefix(f"{run_id}/") if run_id else h for h in names),
            )


def fold_run_state(events: Iterable[Mapping[str, Any]]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state
