"""The plan file's JSON Schema: what ``orchestrator schema`` prints and ``plan.schema.json``
(at the repository root, for the ``# yaml-language-server: $schema=`` hints) holds.

It is generated from :class:`~streams.model.Plan` and then told what pydantic cannot see:

- a step may be written as a plain sentence (a string: an instruction for the stream's
  lead), in ``steps`` and in ``rollback.steps``, since the model turns those into steps
  before validating;
- every property gets a description (from the model's ``Field`` or from :data:`_DESCRIBED`).

The models validate strictly (``"1"`` is not an integer), so the schema's types are the
loader's. The cross-references that :mod:`streams.validation` checks (agents, classes,
locks, needs) are beyond a JSON Schema; everything else the loader accepts, it accepts.
A test regenerates the schema and compares it with the shipped file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streams.model import Plan

__all__ = ["SCHEMA_FILE", "plan_schema", "schema_text"]

#: The shipped schema, beside examples/ (whose hints say ``../plan.schema.json``).
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "plan.schema.json"

_SENTENCE = {
    "type": "string",
    "minLength": 1,
    "description": "A plain sentence: an instruction for the stream's lead agent (which "
    "needs a driver); its id becomes step-<n> (rollback-<n> in a rollback).",
}

#: Descriptions of properties whose ``Field`` has none, by "Model.property".
_DESCRIBED: dict[str, str] = {
    "Plan.version": "The plan file format's version: 1.",
    "Plan.title": "The plan's title, for people.",
    "Plan.summary": "What the plan is for, for people.",
    "Plan.defaults": "Step settings used where a step does not say otherwise.",
    "Plan.min_confidence": "Refuse to run (exit 4) while a stream's predicted success "
    "probability is below this, unless --force.",
    "Plan.agents": "The agents by name: their resource class, scope and driver.",
    "Plan.streams": "The focus areas, each run as one stream of steps.",
    "AgentSpec.driver": "What performs the agent's sentence steps: an external process "
    "({command: [...]}) or a model ({llm: {...}}).",
    "DriverSpec.cwd": "Working directory, relative to the run's (default: the run's).",
    "DriverSpec.env": "Environment variables given to the agent process.",
    "DriverSpec.pass_env": "Names of the daemon's environment variables passed through.",
    "EvidenceRequirement.description": "What the evidence is, for people.",
    "GateCriterion.expr": "A comparison over a metric, e.g. db.response_ms.p50 < 100.",
    "GateCriterion.weight": "The criterion's share of the gate's confidence.",
    "GateSpec.threshold": "Weighted share of criteria that must hold (0..1).",
    "GateSpec.criteria": "Criteria as expressions, or {expr, weight}.",
    "PlanDefaults.retries": "Retries of a failed or timed-out attempt.",
    "RollbackSpec.steps": "Steps run when the stream fails, under caps and locks.",
    "StepSpec.agent": "The agent that performs the step (one of the stream's team).",
    "StepSpec.action": "A built-in action (command, sleep, http.check...) the agent may run.",
    "StepSpec.with": "The action's parameters.",
    "StepSpec.title": "What the step does, for people.",
    "StepSpec.locks": "Shared resources (of the plan's resources) held while it runs.",
    "StepSpec.timeout": "Per-attempt timeout (default: the plan's).",
    "StepSpec.retries": "Retries after a failed attempt (default: the plan's).",
    "StepSpec.lock_timeout": "How long it waits for its slot and locks before re-queueing.",
    "StepSpec.undo": "How to revert the step when the stream rolls back.",
    "StreamSpec.title": "The focus area's title.",
    "StreamSpec.priority": "Scheduling priority: critical, high, medium or low.",
    "StreamSpec.methodology": "How the work is done (part of the stream's history key).",
    "StreamSpec.success_probability": "The planner's success probability (0..1): the prior "
    "that recorded runs update.",
    "StreamSpec.risk_level": "The planner's risk level, shown next to the predicted failure.",
    "StreamSpec.timeline": "Expected duration and limit, e.g. 15m..30m.",
    "StreamSpec.current_state": "Where things stand before the stream, for people.",
    "StreamSpec.strategy": "The stream's strategy, for people.",
    "StreamSpec.expected_improvement": "What the stream should improve, for people.",
    "StreamSpec.team": "The agents that work on the stream.",
    "StreamSpec.depends_on": "Streams that must succeed before this one starts.",
    "StreamSpec.steps": "The implementation sequence: steps, or plain sentences.",
    "StreamSpec.gate": "The success gate over measured metrics.",
    "StreamSpec.evidence": "Mandatory evidence the stream must end with.",
    "StreamSpec.rollback": "What to do when the stream fails.",
    "UndoSpec.action": "The action that reverts the step.",
    "UndoSpec.with": "The undo action's parameters.",
    "UndoSpec.timeout": "The undo's timeout (default: the step's).",
}


def plan_schema() -> dict[str, Any]:
    """The plan file's JSON Schema (draft 2020-12)."""
    document = Plan.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "Orchestrator phase plan"
    defs: dict[str, dict[str, Any]] = document["$defs"]
    for owner in ("StreamSpec", "RollbackSpec"):
        steps = defs[owner]["properties"]["steps"]
        # if/then/else, not anyOf: a wrong step object is reported at its own key.
        steps["items"] = {"if": {"type": "string"}, "then": _SENTENCE, "else": steps["items"]}
    for name, definition in [("Plan", document), *defs.items()]:
        for prop, spec in definition.get("properties", {}).items():
            if "description" not in spec:
                text = _DESCRIBED.get(f"{name}.{prop}")
                if text is not None:
                    spec["description"] = text
    return document


def schema_text() -> str:
    """The schema as the shipped file holds it."""
    return json.dumps(plan_schema(), indent=2) + "\n"
