"""The one exception tree of the orchestrator.

Every error a user can see derives from :class:`OrchestratorError`. Subclasses carry
structured fields and build their own message, which names the place and the fix::

    OrchestratorError
    ├── PlanInvalid                 a plan file failed loading or validation (all problems)
    ├── UsageError                  a bad command line or setting
    ├── DaemonUnavailable           no daemon answers on the control socket
    ├── DaemonError                 the daemon answered a request with an error
    ├── ConfidenceTooLow            a run refused: predicted success below min_confidence
    ├── CoordinationError
    │   ├── LockWaitTimeout         a need was not granted within its lock_timeout
    │   ├── LockLost                a lease ran out before it was renewed
    │   └── CoordinatorUnavailable  the coordination backend cannot be reached
    ├── ActionError
    │   ├── ActionFailed            an action ran and reported failure
    │   └── UnknownAction           a plan names an action nobody registered
    ├── ContextPackageError         (context_packages.errors)
    │   ├── UnknownAgent            no such agent in the plan
    │   ├── PackageTooLarge         even the minimal package exceeds the limit
    │   └── TokenizerUnavailable    the offline tokenizer file is missing or damaged
    ├── StoreError                  (orchestrator.store.errors) the run store failed
    │   └── StoreUnavailable        it cannot be reached or answer in time
    │       └── DiskFull            its disk is full; writes succeed again once space is freed
    └── GateSyntaxError             (streams.gates) a gate criterion does not parse

A traceback reaching the user is a bug: the CLI prints ``str(error)`` for these and exits
with the code the error class declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ActionError",
    "ActionFailed",
    "ConfidenceTooLow",
    "CoordinationError",
    "CoordinatorUnavailable",
    "DaemonError",
    "DaemonUnavailable",
    "LockLost",
    "LockWaitTimeout",
    "OrchestratorError",
    "PlanInvalid",
    "PlanProblem",
    "UnknownAction",
    "UsageError",
    "first_orchestrator_error",
]


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    exit_code: int = 1


def first_orchestrator_error(exc: BaseException) -> OrchestratorError | None:
    """The OrchestratorError inside ``exc`` (itself, or nested in exception groups)."""
    if isinstance(exc, OrchestratorError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_orchestrator_error(inner)
            if found is not None:
                return found
    return None


@dataclass(frozen=True, slots=True)
class PlanProblem:
    """One problem in a plan file, at a 1-based line and column (0 when unknown)."""

    path: str
    line: int
    column: int
    reason: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        text = f"{where}: {self.reason}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class PlanInvalid(OrchestratorError):
    """A plan file could not be loaded or failed validation; ``problems`` lists each one."""

    exit_code = 2

    def __init__(self, problems: Sequence[PlanProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.line, p.column)))
        count = len(self.problems)
        head = f"plan invalid: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))

    @classmethod
    def one(
        cls, path: str | Path, line: int, column: int, reason: str, fix: str = ""
    ) -> PlanInvalid:
        return cls([PlanProblem(str(path), line, column, reason, fix)])


class UsageError(OrchestratorError):
    """A command line or setting that cannot be acted on."""

    exit_code = 2


class ConfidenceTooLow(OrchestratorError):
    """A run was refused: a stream's predicted success probability is below the plan's
    ``min_confidence``. Its own exit code (4), so scripts can tell "refused by the
    prediction" from "invalid plan" (2); ``--force`` runs it anyway."""

    exit_code = 4


class DaemonUnavailable(OrchestratorError):
    """Nothing usable answers on the control socket at ``socket``."""

    exit_code = 3

    def __init__(self, socket: str, reason: str) -> None:
        self.socket = socket
        self.reason = reason
        super().__init__(
            f"no daemon answers on {socket}: {reason} (fix: start one with "
            "`orchestrator daemon`, or pass --socket / ORCH_SOCKET for the one you run)"
        )


class DaemonError(OrchestratorError):
    """The daemon refused a request: JSON-RPC ``code``, its ``message`` and ``data``."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(message)
        # An invalid plan exits like `validate` does; a refusal by min_confidence like `run`.
        if code == 1006:
            self.exit_code = ConfidenceTooLow.exit_code
        else:
            self.exit_code = 2 if code == 1001 else 1


class CoordinationError(OrchestratorError):
    """Base for failures of the coordination backend (slots, locks, shared state)."""


class LockWaitTimeout(CoordinationError):
    """A need (class slot plus locks) was not granted within ``waited_s``."""

    def __init__(self, holder: str, resources: Sequence[str], waited_s: float) -> None:
        self.holder = holder
        self.resources = tuple(resources)
        self.waited_s = waited_s
        super().__init__(
            f"{holder}: not granted {', '.join(self.resources) or 'a slot'} "
            f"within {waited_s:.3g}s; it will queue again"
        )


class LockLost(CoordinationError):
    """A lease on ``resource`` (granted with fencing token ``fence``) expired unrenewed."""

    def __init__(self, resource: str, fence: int, reason: str = "lease expired") -> None:
        self.resource = resource
        self.fence = fence
        self.reason = reason
        super().__init__(f"lost lock on {resource!r} (fence {fence}): {reason}")


class CoordinatorUnavailable(CoordinationError):
    """The coordination backend at ``where`` (secrets already removed) cannot be used."""

    def __init__(self, where: str, reason: str, fix: str = "") -> None:
        self.where = where
        self.reason = reason
        self.fix = fix
        text = f"coordinator {where} unavailable: {reason}"
        super().__init__(f"{text} (fix: {fix})" if fix else text)


class ActionError(OrchestratorError):
    """Base for errors raised by agents' actions."""


class ActionFailed(ActionError):
    """An action ran and failed; ``reason`` says why in words a user can act on."""

    def __init__(self, action: str, reason: str) -> None:
        self.action = action
        self.reason = reason
        super().__init__(f"action {action!r} failed: {reason}")


class UnknownAction(ActionError):
    """No action of this name is registered."""

    def __init__(self, action: str, known: Sequence[str]) -> None:
        self.action = action
        self.known = tuple(known)
        super().__init__(f"unknown action {action!r}; known actions: {', '.join(self.known)}")
