"""The LLM driver: ``driver: {llm: {provider, model, ...}}`` agents performing sentence
steps with pydantic-ai, every tool call through the daemon's
:class:`~agents.tools.ToolGate` (``docs/llm-agents.md``).

Owns the agent loop (pydantic-ai), the tools offered to the model, budgets and retries. Must
not import ``orchestrator``: locks and events reach it through the ports of
:mod:`agents.tools`."""

from agents.drivers.llm.budget import REQUEST_OUTPUT_CAP, MeteredModel, TokenBudget
from agents.drivers.llm.driver import REPORT_TOOL, LlmDriver, ModelFactory
from agents.drivers.llm.models import RetryingModel, api_key, build_model
from agents.drivers.llm.params import LlmParams, Report, ReportEvidence

__all__ = [
    "REPORT_TOOL",
    "REQUEST_OUTPUT_CAP",
    "LlmDriver",
    "LlmParams",
    "MeteredModel",
    "ModelFactory",
    "Report",
    "ReportEvidence",
    "RetryingModel",
    "TokenBudget",
    "api_key",
    "build_model",
]
