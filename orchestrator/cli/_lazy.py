"""A click group whose commands are imported when they are invoked, not when it is.

Private to :mod:`orchestrator.cli`. Each command names its module and attribute
(``"orchestrator.cli.run:run"``); :meth:`LazyGroup.get_command` imports that module the
first time the command is resolved, so ``orchestrator --version`` imports no command module
and ``orchestrator status`` only the daemon client's. Listing the commands (``--help``)
imports every module, which is what their one-line help needs. This is the pattern click's
documentation gives for large command sets ("Lazily Loading Subcommands").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A :class:`click.Group` with ``lazy``: command name -> ``"module:attribute"``."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy.get(cmd_name)
        if target is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")  # a bug in the table
        self.add_command(command, cmd_name)
        return command
