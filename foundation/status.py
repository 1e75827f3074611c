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
    5    CANCELLED    the followed run was cancelled (``orchestrator cancel``)
    130  INTERRUPTED  Ctrl-C or SIGTERM in this process, a run suspended by a drain, or
                      interrupted (its daemon stopped and could not resume it)

``orchestrator run`` cancelled by Ctrl-C exits 130, not 5: the signal is the meaning.
"""

from __future__ import annotations

import enum

__all__ = [
    "EXIT_CODE_MEANINGS",
    "FINISHED_STATUSES",
    "RUN_STATUSES",
    "UNFINISHED_STATUSES",
    "ExitCode",
    "RunStatus",
]


class ExitCode(enum.IntEnum):
    """The process exit codes of the command line (see the module docstring)."""

    OK = 0
    FAILED = 1
    INVALID = 2
    UNAVAILABLE = 3
    REFUSED = 4
    CANCELLED = 5
    INTERRUPTED = 130

    @classmethod
    def of_status(cls, status: str) -> ExitCode:
        """The exit code for a run that ended with ``status`` (a name as events carry it);
        an unknown name (no ``run_finished`` seen) is a failure."""
        try:
            return RunStatus(status).exit_code
        except ValueError:
            return cls.FAILED


#: What each exit code means, in the words of ``orchestrator --help`` and the README's table
#: (a test keeps the README's table equal to this).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "succeeded: the run succeeded, or the command did what it was asked",
    ExitCode.FAILED: "failed: a stream failed or was skipped, verify-log found a violation, "
    "or a backend (Redis, the store) could not be used",
    ExitCode.INVALID: "invalid: an invalid plan, command line or setting",
    ExitCode.UNAVAILABLE: "no daemon: nothing answers on the control socket",
    ExitCode.REFUSED: "refused: below the plan's min_confidence (--force runs it anyway)",
    ExitCode.CANCELLED: "cancelled: the followed run was cancelled (orchestrator cancel)",
    ExitCode.INTERRUPTED: "interrupted: Ctrl-C or SIGTERM, a run suspended by a drain, "
    "or one its daemon stopped and could not resume",
}


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
    RunStatus.CANCELLED: ExitCode.CANCELLED,
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
