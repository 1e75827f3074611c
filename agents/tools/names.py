"""How an action is named and described as a tool, to a model or an MCP client.

A tool's name is its action's with ``.`` as ``_`` (``file.read`` -> ``file_read``), its JSON
schema the action's parameter model without ``expected_version`` (the
:class:`~agents.tools.ToolGate` sets that from the session's reads, whatever the caller
passes). Both the LLM driver (pydantic-ai tools) and the per-step MCP tool server name tools
this way; this module imports neither pydantic-ai nor mcp, so a driver that only names tools
does not load them.
"""

from __future__ import annotations

from typing import Any

from agents.registry import ActionDef, ActionRegistry

__all__ = ["action_of", "tool_name", "tool_schema"]

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
