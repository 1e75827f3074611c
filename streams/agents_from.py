"""``agents_from:``: a plan's agents taken from Claude Code agent definitions.

``agents_from: [.claude/agents, ...]`` (folders relative to the plan file) reads every
``NAME.md`` definition there (:mod:`streams.agent_definitions`) into the plan's ``agents:``
before the plan is validated. A definition gives:

- the plan id: the slug of its ``name`` (``Security Scanner`` -> ``security-scanner``), and
  ``display_name``: the name as written;
- ``role``: its ``description``; ``instructions``: its Markdown body (the agent's context
  package carries it);
- ``can``: its ``tools`` mapped by :data:`CLAUDE_TOOL_ACTIONS` (no ``tools``, which in Claude
  Code means every tool: every action of the table); ``claude_tools``: the tools as written,
  so that ``validate`` reports those with no action here (never silently dropped);
- ``class``: ``defaults.agent_class`` (a definition has no resource class).

A plan's own ``agents:`` entry of the same id overrides the definition key by key (``class``,
``can``, ``driver``, ``role``...) and extends it with keys it lacks. Problems (a missing
folder, a broken definition, no class) are placed at the ``agents_from`` entry.

Claude Code tool -> action:

=================  ============  ==================================================
Claude Code tool   action        note
=================  ============  ==================================================
Read               file.read     content and version (sha256)
Edit, MultiEdit    file.edit     exact-string replacements; stale writes refused
Write              file.write    whole file; stale writes refused
Bash               command       argv, no shell unless ``[sh, -c, ...]``
WebFetch           http.probe    GET a URL (health checks)
Glob, Grep, LS,    (none)        reported by ``validate``; no search actions yet
NotebookEdit,
WebSearch, Task,
TodoWrite, mcp__*
=================  ============  ==================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.agent_definitions import AgentDefinition

__all__ = ["CLAUDE_TOOL_ACTIONS", "DefinitionIssue", "apply_agents_from", "map_tools", "tool_notes"]

#: Claude Code tool name -> the action that does its work here (see the module doc).
CLAUDE_TOOL_ACTIONS: Mapping[str, str] = {
    "Read": "file.read",
    "Edit": "file.edit",
    "MultiEdit": "file.edit",
    "Write": "file.write",
    "Bash": "command",
    "WebFetch": "http.probe",
}

#: A problem of ``agents_from``: where (a plan location), why, and the fix.
DefinitionIssue = tuple[tuple[str | int, ...], str, str]


def map_tools(tools: Iterable[str]) -> tuple[list[str], list[str]]:
    """The actions for Claude Code ``tools`` (in order, once each) and the tools with none."""
    actions: list[str] = []
    unmapped: list[str] = []
    for tool in tools:
        action = CLAUDE_TOOL_ACTIONS.get(tool)
        if action is None:
            if tool not in unmapped:
                unmapped.append(tool)
        elif action not in actions:
            actions.append(action)
    return actions, unmapped


def _entry(definition: AgentDefinition, agent_class: Any) -> dict[str, Any]:
    # No `tools:` means every tool in Claude Code: every action of the table here.
    can, _ = map_tools(definition.tools or CLAUDE_TOOL_ACTIONS)
    entry: dict[str, Any] = {
        "can": can,
        "display_name": definition.name,
        "claude_tools": list(definition.tools),
        "instructions": definition.instructions or None,
    }
    if definition.description:
        entry["role"] = definition.description
    if agent_class is not None:
        entry["class"] = agent_class
    return entry


def apply_agents_from(
    data: dict[str, Any], base_dir: Path
) -> tuple[dict[str, Any], list[DefinitionIssue]]:
    """``data`` (a parsed plan) with the definitions of its ``agents_from`` folders merged
    into ``agents``; the problems found, placed at the folder's entry. ``data`` is returned
    unchanged when it has no (well-formed) ``agents_from``: the model reports the shape."""
    folders = data.get("agents_from")
    if not isinstance(folders, list) or not all(isinstance(f, str) for f in folders):
        return data, []
    defaults = data.get("defaults")
    agent_class = defaults.get("agent_class") if isinstance(defaults, dict) else None
    # Imported here: most plans name no definitions, and reading them builds a model of
    # their front matter and the Markdown helpers (`validate` need not pay for that).
    from streams.agent_definitions import read_definitions

    own = data.get("agents")
    own = own if isinstance(own, dict) else {}
    issues: list[DefinitionIssue] = []
    merged: dict[str, Any] = {}
    for index, folder in enumerate(folders):
        where: tuple[str | int, ...] = ("agents_from", index)
        path = Path(folder) if Path(folder).is_absolute() else base_dir / folder
        if not path.is_dir():
            issues.append(
                (where, f"{folder}: no such folder", "check the path (relative to the plan file)")
            )
            continue
        found, problems = read_definitions(path)
        issues.extend((where, f"{p.path}: {p.reason}", p.fix) for p in problems)
        for ident, definition in found.items():
            if ident in merged:
                issues.append(
                    (
                        where,
                        f"{definition.path}: defines {ident!r} again",
                        "rename one of the agents",
                    )
                )
                continue
            mine = own.get(ident)
            if agent_class is None and not (isinstance(mine, dict) and "class" in mine):
                issues.append(
                    (
                        where,
                        f"agent {ident!r} ({definition.path}) has no resource class",
                        "set defaults.agent_class, or give it one: "
                        f"agents: {{{ident}: {{class: io}}}}",
                    )
                )
            entry = _entry(definition, agent_class)
            merged[ident] = {**entry, **mine} if isinstance(mine, dict) else entry
    for name, spec in own.items():
        merged.setdefault(name, spec)
    return {**data, "agents": merged}, issues


def tool_notes(agents: Mapping[str, Any]) -> list[str]:
    """One line per agent whose Claude Code tools include some with no action here
    (``agents``: the plan's agent specs, which carry ``claude_tools``)."""
    notes: list[str] = []
    for name, spec in agents.items():
        _, unmapped = map_tools(getattr(spec, "claude_tools", ()))
        if unmapped:
            notes.append(
                f"agent {name!r}: Claude Code tool(s) {', '.join(unmapped)} have no action here "
                "and are left out of its scope (see docs/llm-tools.md for the mapping)"
            )
    return notes
