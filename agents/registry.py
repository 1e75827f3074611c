"""The registry of actions: name -> parameters model and async function.

Plans name actions; validation checks each step's ``with:`` against the action's pydantic
parameters model before anything runs, and the scheduler calls the function with the parsed
parameters. An agent may only run the actions its ``can`` list allows (checked at validation).

An action may also say which resources one call touches (``resources(params)``: lock names
such as ``file:<relative path>`` or ``docker:<container>``), so that an agent's individual
tool calls can be locked (see :mod:`agents.tools.gate`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agents.base import ActionContext, ActionResult
from foundation.errors import UnknownAction

__all__ = ["ActionDef", "ActionFunc", "ActionRegistry", "ResourcesFunc"]

ActionFunc = Callable[[ActionContext, Any], Awaitable[ActionResult]]
#: The resources one call with these (validated) parameters touches.
ResourcesFunc = Callable[[Any], list[str]]


@dataclass(frozen=True, slots=True)
class ActionDef:
    """A registered action. ``params`` validates the step's ``with:`` mapping;
    ``resources`` (optional) names the resources one call touches."""

    name: str
    params: type[BaseModel]
    run: ActionFunc
    summary: str = ""
    resources: ResourcesFunc | None = None

    def resources_of(self, params: BaseModel) -> list[str]:
        """The resources a call with ``params`` touches (none when the action says none)."""
        return [] if self.resources is None else self.resources(params)


class ActionRegistry(Mapping[str, ActionDef]):
    """An immutable-by-convention name -> :class:`ActionDef` map with a decorator to add."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionDef] = {}

    def register(
        self,
        name: str,
        params: type[BaseModel],
        summary: str = "",
        resources: ResourcesFunc | None = None,
    ) -> Callable[[ActionFunc], ActionFunc]:
        """Register the decorated function as action ``name``."""

        def decorate(func: ActionFunc) -> ActionFunc:
            if name in self._actions:
                raise ValueError(f"action {name!r} registered twice")
            self._actions[name] = ActionDef(name, params, func, summary, resources)
            return func

        return decorate

    def get_action(self, name: str) -> ActionDef:
        """Return the action or raise :class:`UnknownAction` listing the known ones."""
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(name, sorted(self._actions)) from None

    def __getitem__(self, name: str) -> ActionDef:
        return self._actions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._actions)

    def __len__(self) -> int:
        return len(self._actions)
