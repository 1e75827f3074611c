"""What plan validation needs to know about actions, without knowing the actions themselves.

``streams`` sits below ``agents`` in the import order, so it cannot import the action
registry. It checks a step's ``action`` and ``with:`` against any :class:`ActionCatalog`
instead: a read-only name -> :class:`ActionSpec` mapping, which ``agents.ActionRegistry`` is.
:func:`agents.plans.load_plan` passes the built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import BaseModel

__all__ = ["ActionCatalog", "ActionSpec"]


class ActionSpec(Protocol):
    """One action as validation sees it: the model its ``with:`` mapping must satisfy."""

    @property
    def params(self) -> type[BaseModel]: ...


ActionCatalog = Mapping[str, ActionSpec]
