"""How a run ends, and the one map from that (or an error) to a process exit code.

:class:`RunStatus` is every state a run can be in: ``queued`` and ``running`` while the
store has it unfinished, ``succeeded``, ``failed``, ``cancelled`` and ``interrupted`` (the
daemon stopped and could not resume it) once it ended, and ``suspended`` for a scheduler
drained before its streams ended (not final: the store keeps the run ``running`` and the next
daemon resumes it). It is a ``StrEnum``: members compare equal to their names and serialise
as them, so events, the store and the control socket carry plain strings.

:class:`ExitCode` is the one exit-code map of every command (``run``, ``submit --wait``,
``watch``, ``validate``, errors; :attr:`foundation.errors.OrchestratorError.exit_code`)::

    0    OK           the run succeeded (or the command did what it was asked)
    1    FAILED       a stream failed or was skipped; a backend could not be used
    2    INVALID      an invalid plan, command line or setting
    3    UNAVAILABLE  no daemon answers on the control socket
    4    REFUSED      refused by the plan's min_confidence
    130  INTERRUPTED  cancelled (Ctrl-C, SIGTERM), suspended by a drain, or interrupted
"""

from __future__ import annotations

import enum

__all__ = ["FINISHED_STATUSES", "RUN_STATUSES", "UNFINISHED_STATUSES", "ExitCode", "RunStatus"]


class ExitCode(enum.IntEnum):
    """The process exit codes of the command line (see the module docstring)."""

    OK = 0
    FAILED = 1
    INVALID = 2
    UNAVAILABLE = 3
    REFUSED = 4
    INTERRUPTED = 130

    @classmethod
    def of_status(cls, status: str) -> ExitCode:
        """The exit code for a run that ended with ``status`` (a name as events carry it);
        an unknown name (no ``run_finished`` seen) is a failure."""
        try:
            return RunStatus(status).exit_code
        except ValueError:
            return cls.FAILED


class RunStatus(enum.StrEnum):
    """Every state of a run (see the module docstring)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SUSPENDED = "suspended"
    INTERRUPTED = "interrupted"

    @property
    def exit_code(self) -> ExitCode:
        """What a command that followed the run to this state exits with."""
        return _EXIT_CODES.get(self, ExitCode.FAILED)

    @property
    def finished(self) -> bool:
        """Whether the run has ended for good (a suspended run is resumed)."""
        return self in FINISHED_STATUSES


_EXIT_CODES = {
    RunStatus.SUCCEEDED: ExitCode.OK,
    RunStatus.FAILED: ExitCode.FAILED,
    RunStatus.CANCELLED: ExitCode.INTERRUPTED,
    RunStatus.SUSPENDED: ExitCode.INTERRUPTED,
    RunStatus.INTERRUPTED: ExitCode.INTERRUPTED,
}

#: Every status the run store records (``suspended`` is the scheduler's only).
RUN_STATUSES: tuple[RunStatus, ...] = tuple(s for s in RunStatus if s is not RunStatus.SUSPENDED)
#: What a restarted daemon must resume (or mark ``interrupted``).
UNFINISHED_STATUSES: tuple[RunStatus, ...] = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_STATUSES: tuple[RunStatus, ...] = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.INTERRUPTED,
)
