"""The external agent protocol's two documents, as pydantic models.

For each step the daemon writes one :class:`AgentRequest` (JSON) to the agent process's
stdin and reads one :class:`AgentAnswer` (JSON) from its stdout; ``docs/agent-protocol.md``
describes the exchange for agent authors and carries the JSON Schemas of both documents,
generated from these models by :func:`protocol_schemas` (a test keeps the two equal).

Everything in an answer is *claimed* by the agent about its own work: its metrics and
evidence reach the gate marked unverified. The answer is validated strictly (unknown fields,
wrong types, non-finite numbers and over-long text are refused) so that a confused agent is
reported as such instead of being half understood.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AgentAnswer",
    "AgentRequest",
    "EvidenceClaim",
    "PackageInfo",
    "describe_errors",
    "protocol_schemas",
]

PROTOCOL_VERSION: Literal[1] = 1

_SUMMARY_MAX = 2000
_CHECK_MAX = 500
_EXCERPT_MAX = 4000
_METRIC_TEXT_MAX = 256
_METRICS_MAX = 200
_EVIDENCE_MAX = 100


def _metric_value(value: object) -> float | str:
    # A plain validator gives one clear message instead of one per union member, and
    # refuses booleans (JSON true is not a number here).
    if isinstance(value, bool):
        raise ValueError("must be a number or a string, not a boolean")
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if isinstance(value, str):
        if len(value) > _METRIC_TEXT_MAX:
            raise ValueError(f"must be at most {_METRIC_TEXT_MAX} characters")
        return value
    raise ValueError("must be a number or a string")


MetricName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
        max_length=128,
        description="e.g. db.response_ms.p50",
    ),
]
MetricValue = Annotated[
    float | str,
    PlainValidator(_metric_value),
    WithJsonSchema(
        {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": _METRIC_TEXT_MAX}]}
    ),
]
Metrics = Annotated[dict[MetricName, MetricValue], Field(max_length=_METRICS_MAX)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# -- request: daemon -> agent ---------------------------------------------------------------


class PackageInfo(_Request):
    """The agent's context package: its briefing for the whole plan, fitted to its limit."""

    markdown: str = Field(description="The package itself (Markdown).")
    tokens: int = Field(ge=0, description="Exact size of `markdown` in tokens (cl100k_base).")
    token_limit: int = Field(ge=1, description="The agent's package token limit.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of `markdown` as UTF-8."
    )


class AgentRequest(_Request):
    """What the agent receives on stdin for one step (one attempt of it).

    Exactly one of ``instruction`` (a sentence step) and ``action`` (with its ``with``
    parameters) is set.
    """

    protocol: Literal[1] = Field(default=PROTOCOL_VERSION, description="Protocol version.")
    run_id: str
    plan: str = Field(description="The plan's name.")
    stream: str
    step: str
    title: str | None = Field(default=None, description="The step's title, if the plan has one.")
    agent: str = Field(description="The agent's name in the plan.")
    attempt: int = Field(ge=1, description="1 for the first attempt, 2 for the first retry...")
    instruction: str | None = Field(default=None, description="The sentence to carry out.")
    action: str | None = Field(default=None, description="An action name, for action steps.")
    # validation_alias/serialization_alias rather than alias: the constructor keeps `with_`.
    with_: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias="with",
        serialization_alias="with",
        description="The action's parameters.",
    )
    package: PackageInfo
    fences: dict[str, int] = Field(
        default_factory=dict,
        description="Fencing token of each lock the step holds: pass it to the locked "
        "resource so a stale writer can be refused.",
    )
    cwd: str = Field(description="The absolute working directory the agent was started in.")
    deadline: datetime | None = Field(
        default=None,
        description="When the step times out, ISO-8601 UTC; the process is then sent SIGTERM. "
        "null when the step has no time limit.",
    )
    deadline_s: float | None = Field(
        default=None, ge=0, description="Seconds from the request's sending to `deadline`."
    )
    answer_limit: int = Field(ge=1, description="Largest answer accepted on stdout, in bytes.")


# -- answer: agent -> daemon ----------------------------------------------------------------


class EvidenceClaim(_Answer):
    """One piece of evidence the agent says it collected."""

    id: str | None = Field(
        default=None,
        max_length=128,
        description="The stream's evidence requirement this provides, if any.",
    )
    check: str = Field(
        min_length=1, max_length=_CHECK_MAX, description="What was checked, in a line."
    )
    excerpt: str | None = Field(
        default=None, max_length=_EXCERPT_MAX, description="What it showed (an excerpt)."
    )
    metrics: Metrics | None = Field(default=None, description="Numbers it measured.")


class AgentAnswer(_Answer):
    """What the agent prints on stdout, once, before it exits 0."""

    protocol: Literal[1] = Field(default=PROTOCOL_VERSION, description="Protocol version.")
    status: Literal["succeeded", "failed"]
    summary: str = Field(
        min_length=1, max_length=_SUMMARY_MAX, description="What was done, or why not."
    )
    evidence: list[EvidenceClaim] = Field(default_factory=list, max_length=_EVIDENCE_MAX)
    metrics: Metrics = Field(
        default_factory=dict, description="Metric name -> number or string (claimed)."
    )


def describe_errors(error: ValidationError, limit: int = 3) -> str:
    """The first ``limit`` problems of an answer, one clause each: where and why."""
    clauses: list[str] = []
    for item in error.errors()[:limit]:
        where = ".".join(str(part) for part in item["loc"]) or "the answer"
        if item["type"] == "extra_forbidden":
            clauses.append(f"unknown field {where!r}")
        elif item["type"] == "missing":
            clauses.append(f"missing field {where!r}")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            clauses.append(f"{where}: {message}")
    more = error.error_count() - limit
    if more > 0:
        clauses.append(f"and {more} more")
    return "; ".join(clauses)


def protocol_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of both documents as ``docs/agent-protocol.md`` shows them: the
    request as the daemon writes it, the answer as the daemon validates it."""
    return {
        "AgentRequest": AgentRequest.model_json_schema(by_alias=True, mode="serialization"),
        "AgentAnswer": AgentAnswer.model_json_schema(by_alias=True, mode="validation"),
    }
