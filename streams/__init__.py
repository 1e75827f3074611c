"""The phase plan: models, loading with file positions, validation and stream graphs."""

from streams.durations import Duration, Timeline, format_duration, parse_duration
from streams.loader import load_plan, load_plan_text
from streams.model import (
    AgentSpec,
    EvidenceRequirement,
    GateCriterion,
    GateSpec,
    Plan,
    PlanDefaults,
    RollbackSpec,
    StepSpec,
    StreamSpec,
    UndoSpec,
)
from streams.validation import check_plan, effective_needs, find_cycle

__all__ = [
    "AgentSpec",
    "Duration",
    "EvidenceRequirement",
    "GateCriterion",
    "GateSpec",
    "Plan",
    "PlanDefaults",
    "RollbackSpec",
    "StepSpec",
    "StreamSpec",
    "Timeline",
    "UndoSpec",
    "check_plan",
    "effective_needs",
    "find_cycle",
    "format_duration",
    "load_plan",
    "load_plan_text",
    "parse_duration",
]
