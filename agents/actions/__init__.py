"""The built-in actions and the default registry holding them.

Owns each action's parameters model, its run function, its evidence and undo, and what one
call touches (its resources). Actions must not import ``orchestrator``: what they need from
a run reaches them in their :class:`~agents.base.ActionContext`."""

from agents.actions import compose as compose_actions
from agents.actions import docker as docker_actions
from agents.actions import file, gpu, http, postgres, state
from agents.actions import redis as redis_actions
from agents.actions.command import CommandParams, run_command
from agents.actions.sleep import SleepParams, run_sleep
from agents.actions.undo_sequence import register as register_undo_sequence
from agents.registry import ActionRegistry

__all__ = ["builtin_registry"]


def builtin_registry() -> ActionRegistry:
    """Return a new registry with every built-in action."""
    registry = ActionRegistry()
    registry.register("command", CommandParams, "run a program (argv, no shell)")(run_command)
    registry.register("sleep", SleepParams, "wait a while")(run_sleep)
    modules = (state, file, redis_actions, postgres, http, gpu, docker_actions, compose_actions)
    for module in modules:
        module.register(registry)
    register_undo_sequence(registry)
    return registry
