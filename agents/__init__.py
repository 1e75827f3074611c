"""The named specialists' actions: what an agent may do, and the registry of actions."""

from agents.actions import builtin_registry
from agents.base import ActionContext, ActionResult, Evidence, UndoRecord
from agents.registry import ActionDef, ActionFunc, ActionRegistry

__all__ = [
    "ActionContext",
    "ActionDef",
    "ActionFunc",
    "ActionRegistry",
    "ActionResult",
    "Evidence",
    "UndoRecord",
    "builtin_registry",
]
