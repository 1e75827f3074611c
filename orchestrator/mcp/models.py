"""The structured results of ``orchestrator mcp``'s tools (each tool's MCP output schema).

Daemon answers (documented in ``docs/protocol.md``) are passed through with their fields
named here; nested rows the protocol documents in detail (steps, agents, locks) stay
JSON objects so that a new field in the daemon's answer never breaks the MCP server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentsResult",
    "AnalysisResult",
    "CancelResult",
    "ContextPackageResult",
    "EvidenceResult",
    "ImportResult",
    "LocksResult",
    "RunDetail",
    "RunList",
    "RunSummary",
    "SubmitResult",
    "ValidateResult",
    "WaitResult",
]


class _Result(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ValidateResult(_Result):
    valid: bool = Field(description="True when the plan loads and passes every check.")
    source: str = Field(description="The file checked, or <text> for inline text.")
    plan: str | None = Field(default=None, description="The plan's name when valid.")
    streams: int = 0
    steps: int = 0
    agents: int = 0
    problems: list[str] = Field(
        default_factory=list, description="Each problem as file:line:column: reason (fix: ...)."
    )


class RunSummary(_Result):
    run_id: str
    plan: str
    status: str = Field(description="queued, running, succeeded, failed, cancelled, interrupted")
    reason: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


class RunDetail(RunSummary):
    streams: list[dict[str, Any]] = Field(
        default_factory=list, description="Per stream: status, reason and its steps."
    )
    done: int | None = Field(default=None, description="Steps finished (live runs).")
    total: int | None = Field(default=None, description="Steps in the plan (live runs).")
    running: dict[str, Any] | None = Field(default=None, description="Step to agent (live).")
    waiting: dict[str, Any] | None = Field(default=None, description="Step to what it waits for.")
    expected_s: float | None = None
    limit_s: float | None = None


class RunList(_Result):
    runs: list[RunSummary]


class WaitResult(_Result):
    run_id: str
    status: str = Field(description="The run's status when the wait ended.")
    finished: bool = Field(description="False when timeout_s passed before the run ended.")
    steps_done: int = Field(description="Steps that finished (any outcome) while watched.")
    steps_total: int | None = None
    events: int = Field(description="Events received from the daemon.")
    failed_steps: list[str] = Field(
        default_factory=list, description="stream/step: status: reason, for steps not succeeded."
    )


class SubmitResult(_Result):
    run_id: str
    plan: str
    wait: WaitResult | None = Field(default=None, description="Set when wait was asked for.")


class CancelResult(_Result):
    run_id: str
    status: str


class AgentsResult(_Result):
    agents: list[dict[str, Any]] = Field(
        description="Per agent of the active runs: run_id, agent, state, running, "
        "locks_held, waiting, last."
    )


class LocksResult(_Result):
    resources: list[dict[str, Any]] = Field(
        description="Per resource: holder, fence, last_fence, queue."
    )
    classes: list[dict[str, Any]] = Field(description="Per resource class: in_use, cap, waiting.")


class ContextPackageResult(_Result):
    agent: str
    token_limit: int
    tokens: int
    tokenizer: str
    sha256: str
    sections: list[dict[str, Any]]
    cut: list[dict[str, Any]] = Field(description="Sections left out to fit the token limit.")
    markdown: str = Field(description="The package the agent receives.")


class EvidenceResult(_Result):
    run_id: str
    stream: str | None = None
    evidence: list[dict[str, Any]] = Field(
        description="Per check: step, source, verified (by the daemon) or claimed, metrics, "
        "excerpt, sha256."
    )
    gates: list[dict[str, Any]] = Field(description="Each gate's verdict and criteria.")


class AnalysisResult(_Result):
    plan: str
    analysis: dict[str, Any] = Field(
        description="Per stream success probability, risk, timeline; makespan, critical path."
    )


class ImportResult(_Result):
    source: str
    plan: str
    summary: str
    yaml_text: str = Field(description="The plan file; save it, then validate_plan it.")
    report: dict[str, Any] = Field(description="What was mapped, not mapped and assumed.")
