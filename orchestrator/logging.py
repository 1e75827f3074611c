"""structlog configuration for diagnostic logs, done once, here.

Diagnostic lines (``lock_lost``, ``action_crashed``, daemon life-cycle) go to stderr, as
colourful key=value text on a terminal and JSON lines elsewhere. A run's *event log* is a
separate structlog logger built in :mod:`orchestrator.events`.

A diagnostic line that cannot be written (stderr is a file on a full disk: ENOSPC) is
dropped, never raised into the code that logged it: the daemon keeps serving, and the log
goes on once the disk takes lines again.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = ["configure_logging"]


class _SparingPrintLogger(structlog.PrintLogger):
    """A PrintLogger that drops a line it cannot write instead of raising OSError."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except OSError:
            self.dropped = getattr(self, "dropped", 0) + 1

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _SparingPrintLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _SparingPrintLogger:
        return _SparingPrintLogger(self._file)


def configure_logging(
    level: str = "info", fmt: Literal["auto", "console", "json"] = "auto"
) -> None:
    """Configure structlog (and the stdlib root logger it may feed) for this process."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_SparingPrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(name)s: %(message)s")
