"""How a failed attempt ends: retried, failed at once (ActionFailed(retryable=False)), or
stopped because its lease was lost (LockLost)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import anyio

from foundation.errors import LockLost
from orchestrator.coordination import InProcessCoordinator
from orchestrator.coordination.base import Grant, Need, OnGranted
from orchestrator.scheduler import RunStatus, StepStatus
from tests.helpers import AGENTS, events_named, plan_from, run_plan, sleep_step, stream

PROBER = {"prober": {"class": "network", "can": ["http.probe"]}}


def _probe_without_its_header_variable(sid: str) -> dict[str, Any]:
    return {
        "id": sid,
        "agent": "prober",
        "action": "http.probe",
        "with": {"url": "http://127.0.0.1:9/health", "headers_env": {"X-Key": "NOT_SET_ANYWHERE"}},
        "retries": 3,
    }


def test_a_step_that_cannot_succeed_by_retrying_fails_at_once() -> None:
    plan = plan_from(
        [
            stream("probe", [_probe_without_its_header_variable("probe")]),
            # The same retries on a failure that may pass: every attempt is made.
            stream(
                "flaky",
                [sleep_step("boom", retries=3) | {"with": {"fail": True}}],
            ),
        ],
        agents={**AGENTS, **PROBER},
        defaults={"backoff": "1ms"},
    )
    result, events = anyio.run(run_plan, plan)
    assert result.status is RunStatus.FAILED
    probe = events_named(events, "step_finished", step="probe")
    assert [e["attempt"] for e in probe] == [1]
    assert "NOT_SET_ANYWHERE" in probe[0]["reason"] and probe[0]["status"] == "failed"
    assert not events_named(events, "step_retrying", step="probe")
    assert len(events_named(events, "step_finished", step="boom")) == 4
    assert len(events_named(events, "step_retrying", step="boom")) == 3


class _LeaseLosingCoordinator(InProcessCoordinator):
    """The in-process coordinator, but its grants are leased and the lease is lost as soon
    as it is granted: what a Redis lease does when its renewals stop (the real thing is
    tests/chaos/test_lease_sigstop.py)."""

    def __init__(self) -> None:
        super().__init__()
        self._granted: dict[str, Grant] = {}

    async def acquire(self, need: Need, **kwargs: Any) -> Grant:
        return self._lose(await super().acquire(need, **kwargs))

    def submit(self, need: Need, *, on_granted: OnGranted, **kwargs: Any) -> Any:
        return super().submit(need, on_granted=lambda g: on_granted(self._lose(g)), **kwargs)

    def _lose(self, grant: Grant) -> Grant:
        self._granted[grant.need.holder] = grant
        # An event of its own: in-process grants share one that is never set.
        leased = replace(grant, leased=True, lost=anyio.Event())
        leased.lost.set()
        return leased

    async def release(self, grant: Grant) -> None:
        await super().release(self._granted.pop(grant.need.holder, grant))


def test_a_lost_lease_raises_lock_lost_and_the_attempt_fails_with_its_reason() -> None:
    plan = plan_from(
        [stream("s", [sleep_step("hold", seconds=30, locks=["redis"], retries=0)])],
    )
    result, events = anyio.run(partial(run_plan, plan, coordinator=_LeaseLosingCoordinator()))
    assert result.streams["s"].steps["hold"] is StepStatus.FAILED
    (finished,) = events_named(events, "step_finished", step="hold")
    fence = events_named(events, "step_started", step="hold")[0]["fences"]["redis"]
    expected = LockLost({"redis": fence})
    assert finished["reason"] == str(expected)
    assert finished["reason"].startswith("lock_lost: the lease on redis (fence ")
