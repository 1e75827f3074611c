"""Which evidence record satisfies which of a stream's mandatory evidence requirements.

Evidence counts only for what it names. For a requirement ``R`` of a stream, only records
collected by a succeeded step that declares ``R`` (its ``evidence:`` list) are candidates,
and a candidate counts when:

- it names ``R`` by its ``id`` (an agent's claim ``{"id": "R", ...}``, or a record an
  action tagged); a record that names another id counts for that id only, never for ``R``;
- or it names nothing and the daemon's own action collected it (``verified``), and it is of
  *the kind R expects*: its ``source`` (``command``, ``query``, ``http``, ``docker``,
  ``redis``, ``nvml``, ``compose``, ``state``...) is one of ``R.kinds`` when the requirement
  lists any. An unnamed *claim* counts for nothing: an agent must say what it provides.

Where ``R.verified`` or the gate's ``require_verified`` asks for it, only verified records
count: a claim, even one naming ``R``, leaves ``R`` missing (and says so). The first
counting record, verified preferred, is the one reported as satisfying ``R``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agents.base import Evidence
from streams.model import EvidenceRequirement, StepSpec, StreamSpec

if TYPE_CHECKING:  # step_runner imports provides_of from here
    from orchestrator.step_runner import StepOutcome

__all__ = ["RequirementFinding", "counts_for", "match_requirements", "provides_of"]

Completed = Sequence[tuple[StepSpec, "StepOutcome | None"]]


@dataclass(frozen=True, slots=True)
class RequirementFinding:
    """One requirement's verdict: the record that satisfied it, or why it is missing."""

    requirement: str
    satisfied: bool
    step: str | None = None
    check: str | None = None
    source: str | None = None
    verified: bool | None = None
    why: str = ""

    def missing_text(self) -> str:
        return f"{self.requirement} ({self.why})"

    def as_event(self) -> dict[str, Any]:
        if not self.satisfied:
            return {"id": self.requirement, "status": "missing", "why": self.why}
        return {
            "id": self.requirement,
            "status": "verified" if self.verified else "claimed",
            "step": self.step,
            "check": self.check,
            "source": self.source,
        }


def counts_for(requirement: EvidenceRequirement, record: Evidence) -> bool:
    """Whether ``record`` (from a step that declares ``requirement``) is evidence of it,
    before any verified-only rule: it names it, or it is unnamed daemon-collected evidence
    of the kind the requirement expects."""
    if record.id is not None:
        return record.id == requirement.id
    if not record.verified:
        return False
    return not requirement.kinds or record.source in requirement.kinds


def provides_of(record: Evidence, declared: Sequence[str]) -> list[str]:
    """The declared requirement ids ``record`` may count for (for ``evidence_collected``):
    the one it names, if the step declares it; for unnamed daemon-collected evidence, every
    declared id (the gate then checks each requirement's kinds); for an unnamed claim, none."""
    if record.id is not None:
        return [record.id] if record.id in declared else []
    return list(declared) if record.verified else []


def _find(
    requirement: EvidenceRequirement, stream: StreamSpec, completed: Completed, verified_only: bool
) -> RequirementFinding:
    rid = requirement.id
    providers = [(s, o) for s, o in completed if rid in s.evidence]
    if not providers:
        declared = [s.id for s in stream.steps if rid in s.evidence]
        why = (
            f"its step{'s' if len(declared) > 1 else ''} {', '.join(declared)} did not succeed"
            if declared
            else "no step declares it"
        )
        return RequirementFinding(rid, False, why=why)
    records = [
        (step, ev)
        for step, o in providers
        if o is not None and o.result is not None
        for ev in o.result.evidence
    ]
    counting = [(step, ev) for step, ev in records if counts_for(requirement, ev)]
    steps = ", ".join(s.id for s, _ in providers)
    if not counting:
        if not records:
            return RequirementFinding(rid, False, why=f"step {steps} collected none")
        kinds = f" of kind {'/'.join(requirement.kinds)}" if requirement.kinds else ""
        return RequirementFinding(
            rid,
            False,
            why=f"step {steps} collected {len(records)} record(s), none naming it or "
            f"collected by the daemon{kinds}",
        )
    verified = [(s, ev) for s, ev in counting if ev.verified]
    if verified_only and not verified:
        return RequirementFinding(rid, False, why="only claimed by an agent; verified required")
    step, ev = (verified or counting)[0]
    return RequirementFinding(
        rid, True, step=step.id, check=ev.check, source=ev.source, verified=ev.verified
    )


def match_requirements(stream: StreamSpec, completed: Completed) -> list[RequirementFinding]:
    """Each of the stream's mandatory evidence requirements, satisfied or missing."""
    require_all_verified = bool(stream.gate and stream.gate.require_verified)
    return [
        _find(r, stream, completed, r.verified or require_all_verified) for r in stream.evidence
    ]
