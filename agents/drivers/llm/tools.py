"""The tools a model is offered: exactly its agent's ``can`` actions, each run through the
:class:`~agents.tools.ToolGate`.

A tool's name is its action's with ``.`` as ``_`` (``file.read`` -> ``file_read``), its JSON
schema the action's parameter model (without ``expected_version``: the gate sets that from
the session's reads, whatever the model passes). The tool's result is the gate's message:
what happened, also when the call was refused, busy, stale or failed, so the model can act
on it. Arguments are not validated by pydantic-ai: the gate validates them with the action's
model and tells the model what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic_ai import Tool

from agents.registry import ActionDef, ActionRegistry
from agents.tools import ToolGate, ToolSession

__all__ = ["action_of", "tool_name", "tool_schema", "tools_for"]

#: The parameter the gate fills in itself (the stale-write guard).
_GATE_SET = "expected_version"


def tool_name(action: str) -> str:
    """The tool name of ``action`` (``file.read`` -> ``file_read``)."""
    return action.replace(".", "_")


def action_of(tool: str, registry: ActionRegistry) -> str:
    """The action a tool name stands for (the name itself when no action has it)."""
    return next((name for name in registry if tool_name(name) == tool), tool)


def tool_schema(action: ActionDef) -> dict[str, Any]:
    """The JSON schema of ``action``'s tool: its parameters, less ``expected_version``."""
    schema = action.params.model_json_schema()
    properties = schema.get("properties")
    if isinstance(properties, dict) and _GATE_SET in properties:
        properties = {k: v for k, v in properties.items() if k != _GATE_SET}
        schema = {**schema, "properties": properties}
        if isinstance(schema.get("required"), list):
            schema["required"] = [r for r in schema["required"] if r != _GATE_SET]
    return schema


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
