"""Loading a plan checked against the built-in actions.

:mod:`streams.loader` validates a plan against whatever
:class:`~streams.catalog.ActionCatalog` it is given (it may not import this package); these
two functions give it :func:`agents.actions.builtin_registry`, which is what every command
of the orchestrator means by "a valid plan".
"""

from __future__ import annotations

from pathlib import Path

from agents.actions import builtin_registry
from streams import loader
from streams.loader import Positions
from streams.model import Plan

__all__ = ["load_plan", "load_plan_text"]


def load_plan_text(text: str, label: str = "<plan>") -> tuple[Plan, Positions]:
    """:func:`streams.loader.load_plan_text` with the built-in actions."""
    return loader.load_plan_text(text, label, registry=builtin_registry())


def load_plan(path: str | Path) -> Plan:
    """:func:`streams.loader.load_plan` with the built-in actions."""
    return loader.load_plan(path, registry=builtin_registry())
