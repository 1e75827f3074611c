"""The phase plan: pydantic v2 models of a plan file, ``extra="forbid"`` throughout.

A plan can say everything the users' phase documents say: per focus area (stream) its title,
priority, methodology, success probability, risk, timeline, agent team, dependencies,
implementation sequence (steps), success gate with a confidence threshold, mandatory
evidence and rollback procedure with its recovery budget; per agent its resource class and
its scope (the actions it may run); per resource class its concurrency cap.

Cross-references (agents, resources, classes, needs, depends_on) are checked by
:mod:`streams.validation`, which knows where each value sits in the file.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from streams.durations import Duration, Timeline

__all__ = [
    "AgentSpec",
    "EvidenceRequirement",
    "GateCriterion",
    "GateSpec",
    "Plan",
    "PlanDefaults",
    "Priority",
    "RollbackSpec",
    "StepSpec",
    "StreamSpec",
    "UndoSpec",
]

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        max_length=128,
        description="Letters, digits, '-', '_' and '.', starting with a letter or digit.",
    ),
]
Priority = Literal["critical", "high", "medium", "low"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

_TIMELINE_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "expected..limit, e.g. 15m..30m, or one duration"},
        {"type": "number", "minimum": 0},
        {
            "type": "object",
            "properties": {"expected": {"type": ["string", "number"]},
                           "limit": {"type": ["string", "number"]}},
            "additionalProperties": False,
        },
    ]
}
TimelineField = Annotated[Timeline, WithJsonSchema(_TIMELINE_SCHEMA, mode="validation")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PlanDefaults(_Model):
    """Step settings used where a step does not say otherwise."""

    timeout: Duration = Field(default=600.0, description="Per-attempt step timeout.")
    retries: int = Field(default=0, ge=0, le=100)
    backoff: Duration = Field(default=1.0, description="First retry delay; doubles each retry.")
    backoff_max: Duration = Field(default=60.0)
    lock_timeout: Duration | None = Field(
        default=None,
        description="How long a step waits for its slot and locks before it re-queues "
        "with backoff (logged); None waits as long as it takes.",
    )
    token_limit: int = Field(
        default=4000, ge=64, description="Token limit of each agent's context package."
    )


class AgentSpec(_Model):
    """A named specialist: its resource class and the actions it may run (its scope)."""

    resource_class: str = Field(alias="class", description="A key of the plan's caps.")
    can: list[str] = Field(min_length=1, description="Actions this agent may run.")
    role: str | None = Field(default=None, description="What the specialist is for.")
    token_limit: int | None = Field(
        default=None, ge=64, description="This agent's context-package limit (default: plan's)."
    )


class UndoSpec(_Model):
    """How to revert one completed step: an action run by the step's agent."""

    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    timeout: Duration | None = None


class StepSpec(_Model):
    """One step of a stream's implementation sequence."""

    id: Identifier
    agent: str
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    title: str | None = None
    locks: list[str] = Field(default_factory=list)
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    lock_timeout: Duration | None = None
    needs: list[str] | None = Field(
        default=None,
        description="Steps of the same stream that must succeed first; "
        "default: the previous step. [] starts with the stream.",
    )
    idempotent: bool = Field(default=False, description="Safe to run again after a crash.")
    undo: UndoSpec | None = None
    evidence: list[str] = Field(
        default_factory=list, description="Ids of the stream's evidence this step provides."
    )


class GateCriterion(_Model):
    """One success criterion over measured metrics, e.g. ``db.response_ms.p50 < 100``."""

    expr: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class GateSpec(_Model):
    """The stream's success gate: passes when the weighted share of criteria met reaches
    ``threshold``."""

    threshold: Probability = 1.0
    criteria: list[GateCriterion | str] = Field(default_factory=list)
    require_verified: bool = Field(
        default=False, description="Only evidence collected by the daemon itself counts."
    )


class EvidenceRequirement(_Model):
    """A piece of mandatory evidence the stream must end with."""

    id: Identifier
    description: str = ""
    verified: bool = Field(default=False, description="Must be collected by the daemon.")


class RollbackSpec(_Model):
    """What to do when the stream fails: its steps, within a recovery budget."""

    budget: Duration | None = Field(default=None, description="e.g. 2m ('2-minute recovery')")
    steps: list[StepSpec] = Field(default_factory=list)


class StreamSpec(_Model):
    """A focus area run as one stream of steps by its agent team."""

    id: Identifier
    title: str | None = None
    priority: Priority = "medium"
    methodology: str | None = None
    success_probability: Probability | None = None
    risk: Probability | None = Field(default=None, description="Planner's risk, e.g. 0.15.")
    timeline: TimelineField | None = None
    group: str | None = Field(default=None, description="Execution group, e.g. 'stream-2'.")
    current_state: str | None = None
    strategy: str | None = None
    expected_improvement: str | None = None
    team: list[str] = Field(min_length=1)
    depends_on: list[str] = Field(default_factory=list)
    steps: list[StepSpec] = Field(min_length=1)
    gate: GateSpec | None = None
    evidence: list[EvidenceRequirement] = Field(default_factory=list)
    rollback: RollbackSpec | None = None


class Plan(_Model):
    """A phase plan file."""

    version: Literal[1] = 1
    plan: Identifier = Field(description="The plan's name.")
    title: str | None = None
    summary: str | None = None
    caps: dict[str, Annotated[int, Field(ge=1)] | None] = Field(
        description="Concurrency cap per resource class; null means unlimited."
    )
    resources: list[Identifier] = Field(
        default_factory=list, description="Shared components that steps may lock."
    )
    defaults: PlanDefaults = PlanDefaults()
    min_confidence: Probability | None = None
    agents: dict[str, AgentSpec] = Field(min_length=1)
    streams: list[StreamSpec] = Field(min_length=1)

    @field_validator("caps")
    @classmethod
    def _caps_not_empty(cls, caps: dict[str, int | None]) -> dict[str, int | None]:
        if not caps:
            raise ValueError("name at least one resource class, e.g. {cpu: 2, light: null}")
        return caps

    def agent_class(self, agent: str) -> str:
        return self.agents[agent].resource_class

    def total_steps(self) -> int:
        return sum(len(s.steps) for s in self.streams)
