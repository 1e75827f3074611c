"""The registry of actions: name -> parameters model and async function.

Plans name actions; validation checks each step's ``with:`` against the action's pydantic
parameters model before anything runs, and the scheduler calls the function with the parsed
parameters. An agent may only run the actions its ``can`` list allows (checked at validation).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agents.base import ActionContext, ActionResult
from foundation.errors import UnknownAction

__all__ = ["ActionDef", "ActionFunc", "ActionRegistry"]

ActionFunc = Callable[[ActionContext, Any], Awaitable[ActionResult]]


@dataclass(frozen=True, slots=True)
class ActionDef:
    """A registered action. ``params`` validates the step's ``with:`` mapping."""

    name: str
    params: type[BaseModel]
    run: ActionFunc
    summary: str = ""


class ActionRegistry(Mapping[str, ActionDef]):
    """An immutable-by-convention name -> :class:`ActionDef` map with a decorator to add."""

    def __init__(self) -> None:
        self._actions: dict[str, ActionDef] = {}

    def register(
        self, name: str, params: type[BaseModel], summary: str = ""
    ) -> Callable[[ActionFunc], ActionFunc]:
        """Register the decorated function as action ``name``."""

        def decorate(func: ActionFunc) -> ActionFunc:
            if name in self._actions:
                raise ValueError(f"action {name!r} registered twice")
            self._actions[name] = ActionDef(name, params, func, summary)
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
