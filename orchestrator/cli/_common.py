"""What the CLI's commands share: settings from flags, one-line errors, common options.

Private to :mod:`orchestrator.cli`. Imported by every command, so it imports only what all
of them need; the daemon client and the analysis are imported by the functions that use them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio
import click

from foundation.errors import OrchestratorError, first_orchestrator_error
from foundation.status import ExitCode

if TYPE_CHECKING:
    from orchestrator.daemon.client import ControlClient
    from orchestrator.settings import Settings

__all__ = [
    "exit_on_error",
    "fail",
    "history_option",
    "json_option",
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


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
