"""structlog configuration for diagnostic logs, done once, here.

Diagnostic lines (``lock_lost``, ``action_crashed``, daemon life-cycle) go to stderr, as
colourful key=value text on a terminal and JSON lines elsewhere. A run's *event log* is a
separate structlog logger built in :mod:`orchestrator.events`.

A diagnostic line that cannot be written (stderr is a file on a full disk: ENOSPC) is
dropped, never raised into the code that logged it: the daemon keeps serving, and the log
goes on once the disk takes lines again.

Libraries that log through the standard ``logging`` module (asyncpg's connection callbacks,
asyncio's "exception was never retrieved", ``warnings``) are rendered by the same structlog
chain, so that every line of a JSON log is one JSON object (a traceback becomes its
``exception`` field). Every line has the secret values this process knows scrubbed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

from foundation.secrets import known_secrets, scrub_known

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


def _scrub_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask every known secret value in the line's string fields (tracebacks included)."""
    if not known_secrets():
        return event
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub_known(value)
    return event


def configure_logging(
    level: str = "info", fmt: Literal["auto", "console", "json"] = "auto"
) -> None:
    """Configure structlog and route the stdlib root logger through it, for this process."""
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
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),  # as events
            structlog.processors.format_exc_info,
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_SparingPrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),  # as events
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _scrub_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_orchestrator", False):
            root.removeHandler(old)
    handler._orchestrator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
