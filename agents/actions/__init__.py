"""The built-in actions and the default registry holding them.

Owns each action's parameters model, its run function, its evidence and undo, and what one
call touches (its resources). Actions must not import ``orchestrator``: what they need from
a run reaches them in their :class:`~agents.base.ActionContext`.

The default registry names every built-in action at once but imports an action's module
(and so builds its parameter models) only when one of its actions is first looked up: a
command that validates a plan pays for the actions that plan uses, not for all of them."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from agents.registry import ActionRegistry

__all__ = ["BUILTIN_MODULES", "builtin_registry"]

#: module (under ``agents.actions``) -> the actions its ``register(registry)`` adds.
#: ``tests/agents/actions/test_builtin_registry.py`` keeps this true.
BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "command": ("command",),
    "sleep": ("sleep",),
    "state": ("state.put", "state.get", "state.wait"),
    "file": ("file.read", "file.write", "file.edit", "file.restore"),
    "redis": ("redis.probe", "redis.config_set", "redis.acl_setuser", "redis.acl_deluser"),
    "postgres": (
        "postgres.timed_query",
        "postgres.explain",
        "postgres.pool_stats",
        "postgres.stat_statements",
        "postgres.execute",
    ),
    "http": ("http.probe",),
    "gpu": ("gpu.sample",),
    "docker": (
        "docker.inspect",
        "docker.logs",
        "docker.restart",
        "docker.stats",
        "docker.recreate",
    ),
    "compose": ("compose.patch", "compose.restore", "compose.validate"),
    "undo_sequence": ("undo.sequence",),
}


def _registrar(module: str) -> Callable[[ActionRegistry], None]:
    def register(registry: ActionRegistry) -> None:
        loaded = importlib.import_module(f"agents.actions.{module}")
        loaded.register(registry)

    return register


def builtin_registry() -> ActionRegistry:
    """Return a new registry with every built-in action (each module imported on first use)."""
    registry = ActionRegistry()
    for module, names in BUILTIN_MODULES.items():
        registry.register_lazily(names, _registrar(module))
    return registry
