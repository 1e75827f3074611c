"""What the CLI's commands share: settings from flags, one-line errors, common options.

Private to :mod:`orchestrator.cli`. Imported by every command, so it imports only what all
of them need; the daemon client and the analysis are imported by the functions that use them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import click

from foundation.errors import OrchestratorError, first_orchestrator_error
from foundation.status import ExitCode

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from orchestrator.daemon.client import ControlClient
    from orchestrator.settings import Settings

__all__ = [
    "exit_on_error",
    "fail",
    "history_option",
    "output_option",
    "print_table",
    "run_client",
    "settings_of",
    "socket_option",
    "state_dir_option",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def fail(error: OrchestratorError) -> NoReturn:
    """Print ``error`` as its one line on stderr and exit with its code."""
    click.echo(str(error), err=True)
    sys.exit(error.exit_code)


def exit_on_error(exc: BaseException) -> NoReturn:
    """Exit with the first :class:`OrchestratorError` in ``exc`` (a task group may wrap
    it); anything else is a bug and is raised as it is."""
    error = first_orchestrator_error(exc)
    if error is None:
        raise exc
    fail(error)


def settings_of(**overrides: Any) -> Settings:
    """The settings from the environment with the non-None flags on top; logging set up."""
    from orchestrator.logging import configure_logging
    from orchestrator.settings import Settings

    try:
        settings = Settings().with_overrides(**overrides)
    except ValueError as exc:
        click.echo(f"invalid setting: {exc}", err=True)
        sys.exit(ExitCode.INVALID)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def run_client(
    socket_path: Path | None, func: Callable[[ControlClient], Coroutine[Any, Any, T]]
) -> T:
    """Run ``func`` with a client of the daemon at ``socket_path`` (or the settings')."""
    from orchestrator.daemon.client import ControlClient  # not the daemon: only its client

    settings = settings_of(socket=socket_path)
    client = ControlClient(settings.socket_path(), connect_wait_s=settings.connect_wait_s)
    try:
        return anyio.run(func, client)
    except OrchestratorError as exc:
        fail(exc)


def state_dir_option(func: F) -> F:
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Where runs and their event logs live (env ORCH_STATE_DIR).",
    )(func)


def history_option(func: F) -> F:
    # Imported when a command that takes --history is defined (it loads the analysis anyway).
    from orchestrator.analysis import HISTORY_SCOPES

    return click.option(
        "--history",
        "history_scope",
        type=click.Choice(HISTORY_SCOPES),
        default="signature",
        show_default=True,
        help="Which recorded runs predictions rest on: every run of a stream's signature "
        "(any plan), this plan's runs only, or none.",
    )(func)


def socket_option(func: F) -> F:
    return click.option(
        "--socket",
        "socket_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Control socket (env ORCH_SOCKET).",
    )(func)


#: Piped tables are this wide at most, so that no cell (a run id) is ever cut.
_PIPED_WIDTH = 100_000


def output_option(func: F) -> F:
    """``-o/--output json|table``, the same on every command: ``json`` prints JSON (a
    document, or JSON lines for a stream of events), ``table`` (the default) the human
    rendering. The command receives it as ``as_json: bool``; ``--json`` is kept as a hidden
    alias of ``-o json``."""

    @functools.wraps(func)
    def wrapper(*args: Any, output: str | None, json_flag: bool, **kwargs: Any) -> Any:
        return func(*args, as_json=json_flag or output == "json", **kwargs)

    wrapper = click.option("--json", "json_flag", is_flag=True, hidden=True)(wrapper)
    return click.option(  # type: ignore[return-value]  # wraps keeps the click params
        "-o",
        "--output",
        "output",
        type=click.Choice(["json", "table"]),
        default=None,
        help="json: machine-readable JSON; table (default): for people.",
    )(wrapper)


def print_table(table: Table, console: Console | None = None) -> None:
    """Print ``table``; piped (not a terminal), as wide as its cells need, never cut."""
    from rich.console import Console  # only the commands that print tables need rich

    console = console or Console()
    if not console.is_terminal:
        console = Console(file=console.file, width=_PIPED_WIDTH, no_color=True)
    console.print(table, crop=False)
