"""The named specialists' side: what an agent may do, and how its steps are performed.

Owns the action registry (:mod:`.registry`) and the built-in actions (:mod:`.actions`:
command, sleep, redis, postgres, docker, compose, gpu, http, state), the agent drivers
(:mod:`.drivers`: built-in actions, external processes), step process containment and its
watchdog (:mod:`.processes`), GPU allocation (:mod:`.gpus`) and the results and evidence an
action returns (:mod:`.base`).

Must not import :mod:`orchestrator` (the scheduler, coordination, store, daemon): what an
agent needs from them comes in through Protocols and parameters. May import
``context_packages``, ``streams`` and ``foundation`` (the order ``import-linter`` enforces).
"""

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
