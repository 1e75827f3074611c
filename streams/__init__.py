"""The phase plan: models, loading with file positions, validation and stream graphs.

Owns the plan's pydantic models (:mod:`.model`), loading YAML or JSON with line and column
for every problem (:mod:`.loader`, bounds in ``_limits``), the cross-reference checks
(:mod:`.validation`), durations and timelines, the gate grammar, the JSON Schema, the
catalog of known agents, Claude Code agent definitions and the Markdown import
(:mod:`.markdown`).

Must not import ``orchestrator``, ``agents`` or ``context_packages``: a plan is data that
they read. Only :mod:`foundation` lies below it (the order ``import-linter`` enforces).
"""

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
