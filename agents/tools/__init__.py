"""LLM agents' tool layer: every tool call through scope, per-call locks, the stale-write
guard, evidence and undo (:class:`ToolGate`), the ports it needs from the daemon, and how
an action is named as a tool (:mod:`.names`, without pydantic-ai or mcp).

Must not import ``orchestrator``: the daemon's locks and event log reach the gate through
the Protocols of :mod:`.ports` (the Coordinator adapter is ``orchestrator.tool_locks``)."""

from agents.tools.gate import ToolGate, ToolOutcome, ToolSession, ToolStatus
from agents.tools.ledger import ReadLedger
from agents.tools.names import action_of, tool_name, tool_schema
from agents.tools.ports import CallLease, LockService, ToolEvents

__all__ = [
    "CallLease",
    "LockService",
    "ReadLedger",
    "ToolEvents",
    "ToolGate",
    "ToolOutcome",
    "ToolSession",
    "ToolStatus",
    "action_of",
    "tool_name",
    "tool_schema",
]
