"""The agent-driver seam: one Protocol between the step runner and whatever performs a step.

The step runner queues a step for its need, and once granted hands one attempt to the step's
:class:`AgentDriver` as a :class:`DriverCall`: the step's parsed work (``params``), who runs
it and where (:class:`~agents.base.ActionContext`), what it holds (:class:`StepGrant`: locks
with their fencing tokens, GPUs, the deadline), the agent's context package, and a sink for
events. The driver returns an :class:`~agents.base.ActionResult` with its evidence and
:class:`~agents.base.Usage`. Like an httpx transport the Protocol has one method: the runner
owns queueing, timeouts, retries, lease watching, events and release; a driver only performs.

Implementations side by side:

- :class:`~agents.drivers.actions.ActionDriver`: one of the daemon's built-in actions.
- :class:`~agents.drivers.external.ExternalDriver`: the agent's own process, speaking the
  JSON protocol of ``docs/agent-protocol.md``.
- :class:`~agents.drivers.llm.LlmDriver` and :class:`~agents.drivers.claude_code.ClaudeCodeDriver`:
  model-driven agents; each tool call goes through :class:`~agents.tools.ToolGate`, and the
  result reports token usage.

:class:`DriverTask` binds a driver to one step's parsed parameters; :mod:`.plan_drivers`
picks it for each step of a plan.

Contract (checked over every implementation by ``tests/agents/drivers/test_driver_contract``):
an expected failure is a result with ``ok=False`` (or :class:`~foundation.errors.ActionFailed`);
cancellation (the step timeout, a lost lease, Ctrl-C) is let through after the driver has
stopped what it started; evidence the daemon did not measure is marked ``verified=False``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from agents.base import ActionContext, ActionResult

if TYPE_CHECKING:
    from context_packages import AgentPackage

__all__ = [
    "AgentDriver",
    "DriverCall",
    "DriverEvents",
    "DriverTask",
    "StepGrant",
]


@dataclass(frozen=True, slots=True)
class StepGrant:
    """What the step holds for this attempt: its ``locks`` (each with its fencing token in
    ``fences``), its ``gpus`` and ``deadline_s``, the step timeout the runner enforces (the
    runner cancels the driver when it passes; a driver may announce it to its agent)."""

    locks: tuple[str, ...] = ()
    fences: Mapping[str, int] = field(default_factory=dict)
    gpus: tuple[int, ...] = ()
    deadline_s: float | None = None


class DriverEvents(Protocol):
    """Where a driver reports progress: the step's event log, bound to run, stream, step and
    agent (secrets masked). ``emit`` never blocks and never raises."""

    def emit(self, event: str, **fields: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverCall:
    """One attempt of one step, as a driver receives it (see the module docstring)."""

    params: BaseModel
    context: ActionContext
    grant: StepGrant
    events: DriverEvents
    package: AgentPackage | None = None


class AgentDriver(Protocol):
    """Performs one attempt of a step; see the module docstring for the contract.

    ``name`` identifies the driver in diagnostics (a built-in action's name, ``external``).
    """

    @property
    def name(self) -> str: ...

    async def perform(self, call: DriverCall) -> ActionResult:
        """Perform ``call``; return what happened (``ok=False``: an expected failure).

        Raises :class:`~foundation.errors.ActionFailed` for an expected failure it reports
        that way; lets cancellation through after cleaning up.
        """
        ...


@dataclass(frozen=True, slots=True)
class DriverTask:
    """A step bound to its driver: the ``params`` the driver parsed and validated before the
    run, and the agent's context ``package`` when the driver sends one."""

    driver: AgentDriver
    params: BaseModel
    package: AgentPackage | None = None

    @property
    def name(self) -> str:
        return self.driver.name
