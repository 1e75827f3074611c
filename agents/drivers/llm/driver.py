"""The LLM driver: a model performs a sentence step, every tool call through the daemon.

:class:`LlmDriver` runs one pydantic-ai agent per step attempt: the agent's context package
as its instructions (system prompt), the step's sentence as the task, its ``can`` actions as
tools (:mod:`.tools`, each call through the :class:`~agents.tools.ToolGate`: scope, per-call
locks, stale writes, evidence, undo, ``tool_called`` events) and a ``report`` tool
(:class:`~.params.Report`) that ends the step with a verdict. A final plain answer ends the
step succeeded, with that text as its summary.

It ends failed, with the reason, when a budget runs out (``max_turns`` model requests,
``max_tokens`` input + output tokens per attempt, the plan's per-run ``token_budget``; the
tokens are reserved and settled per request by :class:`~.budget.MeteredModel`), when
the model's requests keep failing (:mod:`.models`), or when the model keeps calling tools
wrongly past pydantic-ai's retries. A call of a tool the agent was not offered is recorded
by the gate as ``refused`` (the model is told the tools it has). The result carries the
step's :class:`~agents.base.Usage`, the gate's verified evidence, the model's own claims
(``verified=False``) and one undo record for everything its calls changed (in reverse).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_ai import Agent, CallToolsNode, ToolOutput, UsageLimits
from pydantic_ai.exceptions import AgentRunError, UsageLimitExceeded
from pydantic_ai.messages import ToolCallPart
from pydantic_ai.models import Model

from agents.actions.undo_sequence import undo_of
from agents.base import ActionResult, Evidence, Usage
from agents.drivers.base import DriverCall
from agents.drivers.llm.budget import MeteredModel, TokenBudget
from agents.drivers.llm.models import RetryingModel, api_key, build_model, describe
from agents.drivers.llm.params import LlmParams, Report
from agents.drivers.llm.tools import tools_for
from agents.registry import ActionRegistry
from agents.tools import LockService, ToolGate, ToolSession, action_of, tool_name
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from foundation.secrets import scrub
from streams.model import LlmSpec

__all__ = ["REPORT_TOOL", "LlmDriver", "ModelFactory"]

REPORT_TOOL = "report"
#: Makes the model of a step: (spec, API key or None) -> model. Tests pass FunctionModels.
ModelFactory = Callable[[LlmSpec, str | None], Model]
_SUMMARY = 500


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= _SUMMARY else line[:_SUMMARY] + "..."


class LlmDriver:
    """The :class:`~agents.drivers.base.AgentDriver` of agents with ``driver: {llm: ...}``
    (see the module docstring). One per run: ``budget`` is the run's token budget."""

    def __init__(
        self,
        registry: ActionRegistry,
        locks: LockService,
        *,
        budget: TokenBudget | None = None,
        model_factory: ModelFactory = build_model,
        lock_wait_s: float = 5.0,
        stale_guard: bool = True,
    ) -> None:
        self._registry = registry
        self._locks = locks
        self._budget = budget or TokenBudget(None)
        self._model_factory = model_factory
        self._lock_wait_s = lock_wait_s
        self._stale_guard = stale_guard

    @property
    def name(self) -> str:
        return "llm"

    async def perform(self, call: DriverCall) -> ActionResult:
        """Have the model perform the step; see the module docstring. Cancellation passes
        through (a tool call's locks are released by the gate)."""
        params = call.params
        if not isinstance(params, LlmParams):
            raise TypeError(f"the LLM driver takes LlmParams, not {params!r}")
        spec = params.llm
        session = ToolSession(context=call.context, can=frozenset(params.can))
        remaining = self._budget.remaining()
        if remaining is not None and remaining <= 0:
            return self._failed(session, "the run's token_budget is spent", None, spec)
        try:
            key = api_key(spec, call.context.env)
        except ActionFailed as exc:
            return self._failed(session, exc.reason, None, spec)
        model = MeteredModel(
            RetryingModel(
                self._model_factory(spec, key),
                retries=spec.retries,
                backoff_s=spec.retry_backoff,
                secret=key,
            ),
            self._budget,
            spec.max_tokens,
        )
        secrets = [key] if key else []
        gate = ToolGate(
            self._registry,
            self._locks,
            call.events,
            lock_wait_s=self._lock_wait_s,
            stale_guard=self._stale_guard,
        )
        agent: Agent[None, Report | str] = Agent(
            model,
            output_type=[
                ToolOutput(
                    Report,
                    name=REPORT_TOOL,
                    description="End the step with your verdict, the metrics you measured "
                    "and the evidence you saw.",
                ),
                str,
            ],
            instructions=params.system,
            tools=tools_for(params.can, self._registry, gate, session),
        )
        # Tokens are metered per request by MeteredModel; pydantic-ai counts the requests.
        usage_limits = UsageLimits(request_limit=spec.max_turns)
        offered = {tool_name(a) for a in params.can if a in self._registry} | {REPORT_TOOL}
        try:
            # Entering the agent enters its model: the provider's HTTP client (and its
            # kept-alive connections) is closed when the step ends.
            async with agent, agent.iter(params.prompt(), usage_limits=usage_limits) as run:
                async for node in run:
                    if isinstance(node, CallToolsNode):
                        await self._record_unoffered(gate, session, node, offered)
                result = run.result
        except UsageLimitExceeded as exc:
            reason = f"max_turns ({spec.max_turns} model requests) reached: {exc}"
            return self._failed(session, reason, model.usage, spec)
        except ActionFailed as exc:
            return self._failed(session, exc.reason, model.usage, spec)
        except AgentRunError as exc:
            reason = f"the model misbehaved: {scrub(describe(exc), secrets)}"
            return self._failed(session, reason, model.usage, spec)
        assert result is not None  # the run ended with an output
        return self._finished(session, result.output, model.usage, spec)

    async def _record_unoffered(
        self, gate: ToolGate, session: ToolSession, node: CallToolsNode[Any, Any], offered: set[str]
    ) -> None:
        """Let the gate refuse (and record) calls of tools the agent was not offered;
        pydantic-ai tells the model which tools it has."""
        for part in node.model_response.parts:
            if isinstance(part, ToolCallPart) and part.tool_name not in offered:
                arguments = part.args_as_dict() if part.args else {}
                await gate.call(session, action_of(part.tool_name, self._registry), arguments)

    def _finished(
        self, session: ToolSession, output: Report | str, usage: Usage, spec: LlmSpec
    ) -> ActionResult:
        if isinstance(output, str):
            return self._result(
                session,
                ok=True,
                summary=_first_line(output) or "done",
                usage=usage,
                output=output,
                spec=spec,
            )
        at = utc_timestamp()
        claims = tuple(
            Evidence(
                check=c.check,
                source="agent",
                detail={"agent": session.context.agent, "claimed": True},
                excerpt=c.excerpt,
                verified=False,
                at=at,
            )
            for c in output.evidence
        )
        return self._result(
            session,
            ok=output.status == "succeeded",
            summary=_first_line(output.summary) or output.status,
            usage=usage,
            output=output.summary,
            spec=spec,
            metrics=dict(output.metrics),
            claims=claims,
        )

    def _failed(
        self, session: ToolSession, reason: str, usage: Usage | None, spec: LlmSpec
    ) -> ActionResult:
        return self._result(session, ok=False, summary=reason, usage=usage or Usage(), spec=spec)

    @staticmethod
    def _result(
        session: ToolSession,
        *,
        ok: bool,
        summary: str,
        usage: Usage,
        spec: LlmSpec,
        output: str = "",
        metrics: dict[str, float | str] | None = None,
        claims: tuple[Evidence, ...] = (),
    ) -> ActionResult:
        calls: dict[str, int] = {}
        for outcome in session.outcomes:
            calls[outcome.status] = calls.get(outcome.status, 0) + 1
        return ActionResult(
            ok=ok,
            summary=summary,
            output=output,
            metrics=metrics or {},
            evidence=(*session.evidence, *claims),
            undo=undo_of(session.undo),
            details={
                "provider": spec.provider,
                "model": spec.model,
                "tool_calls": calls,
                **({"claimed_metrics": sorted(metrics)} if metrics else {}),
            },
            usage=usage,
        )
