"""The registry of actions: name -> parameters model and async function.

Plans name actions; validation checks each step's ``with:`` against the action's pydantic
parameters model before anything runs, and the scheduler calls the function with the parsed
parameters. An agent may only run the actions its ``can`` list allows (checked at validation).

An action may also say which resources one call touches (``resources(params)``: lock names
such as ``file:<relative path>`` or ``docker:<container>``), so that an agent's individual
tool calls can be locked (see :mod:`agents.tools.gate`).

Actions may be registered lazily (:meth:`ActionRegistry.register_lazily`): their names are
known at once, and the module that defines them (its parameter models, which pydantic
builds at import) is imported the first time one of them is looked up. A command that
validates a plan then imports only the actions the plan uses.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
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
        # name -> the function that registers it (and its module's other actions)
        self._pending: dict[str, Callable[[ActionRegistry], None]] = {}
        # every name, as registered or promised, in that order (a dict: an ordered set)
        self._names: dict[str, None] = {}
        self._loading = threading.Lock()  # plans are also checked in worker threads

    def register_lazily(
        self, names: Iterable[str], register: Callable[[ActionRegistry], None]
    ) -> None:
        """Promise the actions ``names``: ``register(self)`` is called, once, when one of
        them is first looked up, and must register exactly those names."""
        for name in names:
            if name in self._actions or name in self._pending:
                raise ValueError(f"action {name!r} registered twice")
            self._pending[name] = register
            self._names[name] = None

    def _load(self, name: str) -> None:
        with self._loading:
            register = self._pending.get(name)
            if register is None:  # loaded meanwhile by another thread
                return
            promised = {n for n, r in self._pending.items() if r is register}
            for n in promised:
                del self._pending[n]
            try:
                register(self)
            except BaseException:
                # Undone, so the next lookup tries again and meanwhile none half-exists
                # (`in` true, the lookup "unknown").
                for n in promised:
                    self._actions.pop(n, None)
                    self._pending[n] = register
                raise
        missing = promised - self._actions.keys()
        if missing:
            raise ValueError(f"actions {sorted(missing)} promised but not registered")

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
            if name in self._pending:
                raise ValueError(f"action {name!r} registered twice")
            self._names.setdefault(name)  # a promised name keeps its place
            self._actions[name] = ActionDef(name, params, func, summary, resources)
            return func

        return decorate

    def get_action(self, name: str) -> ActionDef:
        """Return the action or raise :class:`UnknownAction` listing the known ones."""
        try:
            return self[name]
        except KeyError:
            raise UnknownAction(name, sorted(self)) from None

    def __getitem__(self, name: str) -> ActionDef:
        action = self._actions.get(name)
        if action is None and name in self._names:
            self._load(name)  # or wait for another thread's load of it to end
            action = self._actions.get(name)
        if action is None:
            raise KeyError(name)
        return action

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
