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
    │   │   └── GpuWaitTimeout      (agents.gpus) too few GPUs came free within it
    │   ├── LockLost                a lease ran out before it was renewed: the attempt stopped
    │   └── CoordinatorUnavailable  the coordination backend cannot be reached
    ├── ActionError
    │   ├── ActionFailed            an action ran and reported failure (retryable or not)
    │   └── UnknownAction           a plan names an action nobody registered
    ├── GpuError                    (agents.gpus) a GPU step cannot start
    │   ├── GpuUnavailable          no GPU can be read or used here
    │   └── GpuRequestTooLarge      a step asks for more GPUs than the machine has
    ├── ContextPackageError         (context_packages.errors)
    │   ├── UnknownAgent            no such agent in the plan
    │   ├── PackageTooLarge         even the minimal package exceeds the limit
    │   └── TokenizerUnavailable    the offline tokenizer file is missing or damaged
    ├── StoreError                  (orchestrator.store.errors) the run store failed
    │   └── StoreUnavailable        it cannot be reached or answer in time
    │       └── DiskFull            its disk is full; writes succeed again once space is freed
    └── GateSyntaxError             (streams._gate_grammar) a gate criterion does not parse

A class is defined in this module unless a module is named in parentheses (which then holds
its subclasses too). ``tests/foundation/test_errors.py`` keeps this drawing true: it imports
every package and compares it with the real classes, both ways.

A traceback reaching the user is a bug: the CLI prints ``str(error)`` for these and exits
with the code the error class declares (:class:`foundation.status.ExitCode`, the one map).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundation.status import ExitCode

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

    exit_code: int = ExitCode.FAILED


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

    exit_code = ExitCode.INVALID

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

    exit_code = ExitCode.INVALID


class ConfidenceTooLow(OrchestratorError):
    """A run was refused: a stream's predicted success probability is below the plan's
    ``min_confidence``. Its own exit code (4), so scripts can tell "refused by the
    prediction" from "invalid plan" (2); ``--force`` runs it anyway."""

    exit_code = ExitCode.REFUSED


class DaemonUnavailable(OrchestratorError):
    """Nothing usable answers on the control socket at ``socket``."""

    exit_code = ExitCode.UNAVAILABLE

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
            self.exit_code = ExitCode.INVALID if code == 1001 else ExitCode.FAILED


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
    """The lease on ``resources`` (each lock with its fencing token, None for a class slot)
    was not renewed in time, so the holder was stopped: the step runner raises it when a
    leased grant is lost during an attempt. The message starts with ``lock_lost:``, the
    reason the attempt's ``step_finished`` event carries."""

    def __init__(
        self, resources: Mapping[str, int | None], reason: str = "lease not renewed in time"
    ) -> None:
        self.resources = dict(resources)
        self.reason = reason
        held = ", ".join(
            f"{r} (fence {f})" if f is not None else r for r, f in self.resources.items()
        )
        super().__init__(
            f"lock_lost: the lease on {held or 'its slot'} was not kept ({reason}); the step "
            "was stopped (its processes ended) before the lease could pass to another holder"
        )


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
    """An action ran and failed; ``reason`` says why in words a user can act on.

    ``retryable=False`` says that another attempt cannot help (a 4xx answer to a request the
    plan wrote, a missing variable): the step runner then fails the step at once instead of
    spending its ``retries``."""

    def __init__(self, action: str, reason: str, *, retryable: bool = True) -> None:
        self.action = action
        self.reason = reason
        self.retryable = retryable
        super().__init__(f"action {action!r} failed: {reason}")


class UnknownAction(ActionError):
    """No action of this name is registered."""

    def __init__(self, action: str, known: Sequence[str]) -> None:
        self.action = action
        self.known = tuple(known)
        super().__init__(f"unknown action {action!r}; known actions: {', '.join(self.known)}")
