"""The tools a model is offered: exactly its agent's ``can`` actions, each run through the
:class:`~agents.tools.ToolGate`.

Each tool is named and described by :mod:`agents.tools.names` (``file.read`` ->
``file_read``, the action's parameter schema without ``expected_version``). The tool's
result is the gate's message: what happened, also when the call was refused, busy, stale or
failed, so the model can act on it. Arguments are not validated by pydantic-ai: the gate
validates them with the action's model and tells the model what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic_ai import Tool

from agents.registry import ActionDef, ActionRegistry
from agents.tools import ToolGate, ToolSession
from agents.tools.names import tool_name, tool_schema

__all__ = ["tools_for"]


def _tool(action: ActionDef, gate: ToolGate, session: ToolSession) -> Tool[Any]:
    async def call(**arguments: Any) -> str:
        outcome = await gate.call(session, action.name, arguments)
        return f"[{outcome.status}] {outcome.message}"

    return Tool.from_schema(
        call,
        name=tool_name(action.name),
        description=action.summary or action.name,
        json_schema=tool_schema(action),
        # One call at a time per agent: its ledger sees its reads before its writes.
        sequential=True,
    )


def tools_for(
    can: Iterable[str], registry: ActionRegistry, gate: ToolGate, session: ToolSession
) -> list[Tool[Any]]:
    """One tool per action of ``can`` that the registry has (validation refuses others)."""
    return [_tool(registry[name], gate, session) for name in can if name in registry]
