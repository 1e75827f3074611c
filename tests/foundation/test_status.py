"""One RunStatus and one exit-code map for every command."""

from __future__ import annotations

import pytest

from foundation.errors import (
    ConfidenceTooLow,
    DaemonError,
    DaemonUnavailable,
    OrchestratorError,
    PlanInvalid,
    UsageError,
)
from foundation.status import RUN_STATUSES, ExitCode, RunStatus


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("succeeded", 0),
        ("failed", 1),
        ("cancelled", 5),  # someone cancelled it: distinct from Ctrl-C (130)
        ("suspended", 130),  # drained: `run` said 130, `watch` said 1
        ("interrupted", 130),  # the daemon stopped it: `watch` said 1, the README 130
        ("unknown", 1),  # the stream ended before run_finished
    ],
)
def test_a_run_status_has_one_exit_code(status: str, code: int) -> None:
    assert ExitCode.of_status(status) == code


def test_errors_exit_with_the_map_codes() -> None:
    assert OrchestratorError.exit_code == ExitCode.FAILED == 1
    assert PlanInvalid.exit_code == UsageError.exit_code == ExitCode.INVALID == 2
    assert DaemonUnavailable.exit_code == ExitCode.UNAVAILABLE == 3
    assert ConfidenceTooLow.exit_code == ExitCode.REFUSED == 4
    assert DaemonError(1001, "plan invalid").exit_code == ExitCode.INVALID
    assert DaemonError(1006, "refused").exit_code == ExitCode.REFUSED
    assert DaemonError(1, "other").exit_code == ExitCode.FAILED


def test_every_part_uses_the_one_run_status() -> None:
    from orchestrator.daemon.rpc import RunStatus as RpcStatus
    from orchestrator.scheduler import RunStatus as SchedulerStatus
    from orchestrator.store import RunStatus as StoreStatus

    assert SchedulerStatus is StoreStatus is RpcStatus is RunStatus
    assert RunStatus.SUSPENDED not in RUN_STATUSES  # the store never records it
    assert "running" in RUN_STATUSES and RunStatus("running") == "running"
