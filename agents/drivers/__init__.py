"""Agent drivers: what performs a step, behind one seam (:class:`AgentDriver`).

The step runner hands each attempt to a driver as a :class:`DriverCall` and gets an
:class:`~agents.base.ActionResult` back (see :mod:`agents.drivers.base`). Two drivers here,
side by side: :class:`ActionDriver` (a built-in action) and :class:`ExternalDriver` (an
agent's own process, ``driver: {command: [...]}`` in the plan, speaking the JSON protocol of
``docs/agent-protocol.md`` whose two documents are :class:`AgentRequest` and
:class:`AgentAnswer`). Two more live in sub-modules, imported only when a plan needs them
(pydantic-ai and mcp are heavy): :mod:`agents.drivers.llm` (``driver: {llm: ...}``, a model
whose every tool call goes through the :class:`~agents.tools.ToolGate`) and
:mod:`agents.drivers.claude_code` (``driver: {claude_code: ...}``, ``claude -p`` with the
step's MCP tool server, :mod:`agents.drivers.mcp_tools`). :class:`PlanDrivers` picks the
driver for each step of a plan.

This package may import ``context_packages``, ``streams`` and ``foundation``, never
``orchestrator``.
"""

from agents.drivers.actions import ActionDriver
from agents.drivers.base import (
    AgentDriver,
    DriverCall,
    DriverEvents,
    DriverTask,
    StepGrant,
)
from agents.drivers.external import (
    ExternalDriver,
    ExternalParams,
    agent_env,
    run_external,
)
from agents.drivers.plan_drivers import PlanDrivers
from agents.drivers.protocol import (
    PROTOCOL_VERSION,
    AgentAnswer,
    AgentRequest,
    EvidenceClaim,
    PackageInfo,
    describe_errors,
    protocol_schemas,
)

__all__ = [
    "PROTOCOL_VERSION",
    "ActionDriver",
    "AgentAnswer",
    "AgentDriver",
    "AgentRequest",
    "DriverCall",
    "DriverEvents",
    "DriverTask",
    "EvidenceClaim",
    "ExternalDriver",
    "ExternalParams",
    "PackageInfo",
    "PlanDrivers",
    "StepGrant",
    "agent_env",
    "describe_errors",
    "protocol_schemas",
    "run_external",
]
