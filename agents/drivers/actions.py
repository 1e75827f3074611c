"""The built-in action driver: a step performed by one of the daemon's own actions.

An :class:`ActionDriver` wraps one registered :class:`~agents.registry.ActionDef` (command,
redis, postgres, docker, gpu, http, compose, state...): it calls the action's function with
the step's context and its parameters, parsed and validated against the action's model
before the run. The evidence such an action collects is the daemon's own (``verified``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from agents.base import ActionResult
from agents.drivers.base import DriverCall
from agents.registry import ActionDef

__all__ = ["ActionDriver"]


class ActionDriver:
    """The :class:`~agents.drivers.base.AgentDriver` of one built-in action."""

    __slots__ = ("definition",)

    def __init__(self, definition: ActionDef) -> None:
        self.definition = definition

    @property
    def name(self) -> str:
        return self.definition.name

    def parse(self, params: Mapping[str, Any]) -> BaseModel:
        """The action's parameters model for a step's ``with:`` (raises ValidationError)."""
        return self.definition.params.model_validate(params)

    async def perform(self, call: DriverCall) -> ActionResult:
        """Run the action; its own failures come back as it reports them (a failed result,
        or :class:`~foundation.errors.ActionFailed` raised)."""
        return await self.definition.run(call.context, call.params)

    def __repr__(self) -> str:
        return f"ActionDriver({self.name!r})"
