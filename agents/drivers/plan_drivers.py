"""Which driver performs each step of a plan, with its parameters parsed once, before the run.

A step that names an ``action`` is performed by that built-in action
(:class:`~agents.drivers.actions.ActionDriver`); a step with an ``instruction`` by its agent's
own driver: :class:`~agents.drivers.external.ExternalDriver` for ``driver: {command: ...}``,
:class:`~agents.drivers.llm.LlmDriver` for ``driver: {llm: ...}``,
:class:`~agents.drivers.claude_code.ClaudeCodeDriver` for ``driver: {claude_code: ...}``
(these two lock their tool calls through the run's ``tool_locks``), each receiving the
agent's context package. Plans are validated against the built-in registry, so no plan can
name a driver as if it were an action. The scheduler asks :class:`PlanDrivers` for each step's
:class:`~agents.drivers.base.DriverTask` and for the undo actions of a rollback; it does not
know what a driver is made of.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from agents.drivers.actions import ActionDriver
from agents.drivers.base import DriverTask
from agents.drivers.external import ExternalDriver, ExternalParams
from agents.registry import ActionRegistry
from agents.tools import LockService
from context_packages import AgentPackage, build_package
from streams.model import ClaudeCodeDriverSpec, LlmDriverSpec, Plan, StepSpec

if TYPE_CHECKING:
    from agents.drivers.claude_code import ClaudeCodeDriver
    from agents.drivers.llm import LlmDriver

__all__ = ["PlanDrivers"]


class PlanDrivers:
    """The drivers of one plan's run: built-in actions from ``registry``, external agents
    from the plan's ``driver:`` entries. Context packages are built once per agent, on
    first use, and kept in :attr:`packages`."""

    def __init__(
        self,
        plan: Plan,
        registry: ActionRegistry,
        *,
        tool_locks: LockService | None = None,
        llm: LlmDriver | None = None,
        tokens_spent: int = 0,
    ) -> None:
        self.plan = plan
        self._tokens_spent = tokens_spent  # by the run before a resume
        self.registry = registry
        self.packages: dict[str, AgentPackage] = {}
        self._actions: dict[str, ActionDriver] = {}
        self._external = ExternalDriver(registry, tool_locks)
        self._tool_locks = tool_locks
        self._llm = llm

    def llm_driver(self) -> LlmDriver:
        """The run's LLM driver (one per run: it keeps the run's token budget). Raises
        RuntimeError when built without ``tool_locks`` (a tool call needs them)."""
        # pydantic-ai and mcp are heavy: imported only for a plan with such agents (the CLI
        # must start fast and not import mcp before its mcp command runs).
        from agents.drivers.llm import LlmDriver, TokenBudget

        if self._llm is None:
            if self._tool_locks is None:
                raise RuntimeError("LLM agents need PlanDrivers(tool_locks=...)")
            self._llm = LlmDriver(
                self.registry,
                self._tool_locks,
                budget=TokenBudget(self.plan.token_budget, spent=self._tokens_spent),
            )
        return self._llm

    def for_step(self, step: StepSpec) -> DriverTask:
        """The task for ``step`` with its parameters parsed. Raises
        :class:`~foundation.errors.UnknownAction` or pydantic's ValidationError for
        parameters the plan's validation should have refused."""
        if step.instruction is None:
            return self.for_action(step.action or "", step.with_)
        agent = self.plan.agents[step.agent]
        driver = agent.driver
        assert driver is not None  # validation: sentence steps need an agent with a driver
        package = self.package(step.agent)
        if isinstance(driver, LlmDriverSpec):
            from agents.drivers.llm import LlmParams

            llm_params = LlmParams.for_step(
                llm=driver.llm, plan=self.plan.plan, step=step, package=package, can=agent.can
            )
            return DriverTask(self.llm_driver(), llm_params, package)
        if isinstance(driver, ClaudeCodeDriverSpec):
            from agents.drivers.claude_code import ClaudeCodeParams

            claude_params = ClaudeCodeParams.for_step(
                claude=driver.claude_code, step=step, system=package.markdown, can=agent.can
            )
            return DriverTask(self._claude_code(), claude_params, package)
        timeout_s = step.timeout if step.timeout is not None else self.plan.defaults.timeout
        params = ExternalParams.for_step(
            driver=driver,
            plan=self.plan.plan,
            step=step,
            package=package,
            timeout_s=timeout_s,
            can=agent.can,
        )
        return DriverTask(self._external, params, package)

    def _claude_code(self) -> ClaudeCodeDriver:
        from agents.drivers.claude_code import ClaudeCodeDriver

        if self._tool_locks is None:
            raise RuntimeError("Claude Code agents need PlanDrivers(tool_locks=...)")
        return ClaudeCodeDriver(self.registry, self._tool_locks)

    def for_action(self, action: str, params: Mapping[str, Any] | BaseModel) -> DriverTask:
        """The task of built-in ``action`` with ``params`` (a ``with:`` mapping to parse, or
        a model already parsed). Raises UnknownAction (a LookupError) or ValidationError."""
        driver = self._action(action)
        if isinstance(params, BaseModel) and isinstance(params, driver.definition.params):
            return DriverTask(driver, params)
        raw = params.model_dump() if isinstance(params, BaseModel) else params
        return DriverTask(driver, driver.parse(raw))

    def package(self, agent: str) -> AgentPackage:
        """The agent's context package (built on first use)."""
        if agent not in self.packages:
            self.packages[agent] = build_package(self.plan, agent)
        return self.packages[agent]

    def _action(self, name: str) -> ActionDriver:
        if name not in self._actions:
            self._actions[name] = ActionDriver(self.registry.get_action(name))
        return self._actions[name]
