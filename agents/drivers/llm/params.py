"""What the LLM driver gets for one sentence step, and what a model may end it with.

:class:`LlmParams` is built before the run by :meth:`LlmParams.for_step` (the agent's model
spec and scope, the step's sentence, the context package). :class:`Report` is the ``report``
tool's arguments: the verdict a model ends a step with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from streams.model import LlmSpec, StepSpec

if TYPE_CHECKING:
    from context_packages import AgentPackage

__all__ = ["LlmParams", "Report", "ReportEvidence"]


class LlmParams(BaseModel):
    """One sentence step for a model: ``instruction`` (the task), ``system`` (the agent's
    context package, its system prompt), ``can`` (its scope: the tools offered)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: LlmSpec
    plan: str
    instruction: str
    title: str | None = None
    system: str
    can: tuple[str, ...] = ()

    @classmethod
    def for_step(
        cls, *, llm: LlmSpec, plan: str, step: StepSpec, package: AgentPackage, can: list[str]
    ) -> LlmParams:
        """Params for sentence ``step`` of an agent with model ``llm`` and scope ``can``."""
        assert step.instruction is not None, "only sentence steps go to a model"
        return cls(
            llm=llm,
            plan=plan,
            instruction=step.instruction,
            title=step.title,
            system=package.markdown,
            can=tuple(can),
        )

    def prompt(self) -> str:
        """The user message: the step's sentence (with its title when it has one)."""
        return f"{self.title}\n\n{self.instruction}" if self.title else self.instruction


class ReportEvidence(BaseModel):
    """A piece of evidence the model claims (kept as ``verified=False``)."""

    model_config = ConfigDict(extra="forbid")

    check: str = Field(max_length=500, description="What was checked.")
    excerpt: str = Field(default="", max_length=4000, description="What it showed.")


class Report(BaseModel):
    """Ends the step with a verdict: ``succeeded`` or ``failed``, a one-line summary, the
    metrics measured (name -> number or text) and the evidence seen."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed"]
    summary: str = Field(max_length=2000)
    metrics: dict[str, float | str] = Field(default_factory=dict)
    evidence: list[ReportEvidence] = Field(default_factory=list, max_length=50)
