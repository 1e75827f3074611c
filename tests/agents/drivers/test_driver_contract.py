"""The AgentDriver contract, checked the same way over every driver implementation.

Each case builds a step that runs a small Python program (a real subprocess): through the
``command`` built-in action (:class:`ActionDriver`), or as an external agent speaking the
JSON protocol (:class:`ExternalDriver`). The checks are the seam's promises to the step
runner: a result with evidence and usage; an expected failure is a failed result, retried
and recorded like any other; the grant's fences reach the work; a timeout or cancellation
stops the work and is let through; secrets of the step's environment do not come back.
The next driver (LLM) joins by adding a case.
"""

from __future__ import annotations

import json
import os
import random
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from agents import builtin_registry
from agents.base import ActionContext, ActionResult, Usage
from agents.drivers import (
    ActionDriver,
    AgentDriver,
    DriverCall,
    DriverTask,
    ExternalDriver,
    ExternalParams,
    StepGrant,
)
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.step_runner import (
    Drain,
    StepJob,
    StepOutcome,
    StepRunner,
    StepRunnerConfig,
    StepStatus,
)
from streams.model import DriverSpec

SECRET = "tok-contract-5f1e2d3c4b5a6978"
MARKDOWN = "# Context Package - worker\n"
KILL_GRACE_S = 0.5


@dataclass(frozen=True)
class Case:
    """How one driver performs a program: ``build(tmp_path, work, say, ok)`` is a task that
    runs the Python statements ``work``, then reports ``say`` and success (or failure)."""

    name: str
    build: Callable[[Path, str, str, bool], DriverTask]
    #: Whether the evidence it returns was measured by the daemon itself.
    verified: bool


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / f"work-{random.randrange(10**9)}.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def _action(tmp_path: Path, work: str, say: str, ok: bool) -> DriverTask:
    path = _script(
        tmp_path,
        f"import os, sys, time\n{work}\nprint({say!r})\n"
        + ("" if ok else f"sys.stderr.write({say!r} + '\\n'); sys.exit(3)\n"),
    )
    driver = ActionDriver(builtin_registry().get_action("command"))
    return DriverTask(driver, driver.parse({"argv": [sys.executable, path]}))


def _external(tmp_path: Path, work: str, say: str, ok: bool) -> DriverTask:
    answer = {
        "status": "succeeded" if ok else "failed",
        "summary": say,
        "evidence": [{"check": "the work ran", "excerpt": say}],
    }
    path = _script(
        tmp_path,
        f"import json, os, sys, time\nsys.stdin.read()\n{work}\nprint({json.dumps(answer)!r})\n",
    )
    params = ExternalParams(
        driver=DriverSpec(
            command=[sys.executable, path], pass_env=["API_TOKEN"], kill_grace=KILL_GRACE_S
        ),
        plan="contract",
        instruction="do the work",
        package_markdown=MARKDOWN,
        package_tokens=8,
        package_token_limit=4000,
        package_sha256="0" * 64,
    )
    return DriverTask(ExternalDriver(), params)


CASES = [Case("action", _action, verified=True), Case("external", _external, verified=False)]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    value: Case = request.param
    return value


def _call(tmp_path: Path, task: DriverTask, events: EventLog) -> DriverCall:
    ctx = ActionContext(
        run_id="run-c",
        stream="s",
        step="t",
        agent="worker",
        attempt=1,
        fences={"redis": 7},
        env={"PATH": os.environ["PATH"], "API_TOKEN": SECRET, "ORCH_FENCE_REDIS": "7"},
        workdir=tmp_path,
        kill_grace_s=KILL_GRACE_S,
    )
    grant = StepGrant(locks=("redis",), fences={"redis": 7}, deadline_s=30.0)
    return DriverCall(task.params, ctx, grant, events, task.package)


async def _perform(tmp_path: Path, task: DriverTask) -> ActionResult:
    driver: AgentDriver = task.driver  # each case is an AgentDriver, checked by mypy
    log = EventLog("run-c", [MemorySink()]).bind(stream="s", step="t")
    with anyio.fail_after(30):
        return await driver.perform(_call(tmp_path, task, log))


async def _through_runner(
    tmp_path: Path, task: DriverTask, *, timeout_s: float = 20.0, retries: int = 0
) -> tuple[StepOutcome, list[dict[str, object]]]:
    sink = MemorySink()
    runner = StepRunner(
        run_id="run-c",
        plan_name="contract",
        coordinator=InProcessCoordinator(),
        config=StepRunnerConfig(
            workdir=tmp_path,
            env={"PATH": os.environ["PATH"], "API_TOKEN": SECRET},
            kill_grace_s=KILL_GRACE_S,
            release_timeout_s=5.0,
            backoff_s=0.01,
            backoff_max_s=0.01,
        ),
        drain=Drain(),
        rng=random.Random(0),
    )
    job = StepJob(
        stream="s",
        step="t",
        agent="worker",
        task=task,
        resource_class="light",
        cap=None,
        locks=("redis",),
        priority=0,
        timeout_s=timeout_s,
        retries=retries,
        lock_timeout_s=None,
    )
    with anyio.fail_after(60):
        outcome = await runner.run(job, EventLog("run-c", [sink]).bind(stream="s"))
    return outcome, [dict(e) for e in sink.events]


async def test_a_step_returns_its_result_with_evidence_and_usage(
    case: Case, tmp_path: Path
) -> None:
    result = await _perform(tmp_path, case.build(tmp_path, "", "all done", True))
    assert result.ok, result.summary
    assert result.evidence and {e.verified for e in result.evidence} == {case.verified}
    assert result.usage == Usage()  # no model calls: zero, but always there


async def test_an_expected_failure_is_a_failed_result(case: Case, tmp_path: Path) -> None:
    result = await _perform(tmp_path, case.build(tmp_path, "", "disk is read-only", False))
    assert not result.ok
    assert "disk is read-only" in result.summary


async def test_the_grants_fences_reach_the_work(case: Case, tmp_path: Path) -> None:
    seen = tmp_path / "fence"
    work = f"open({str(seen)!r}, 'w').write(os.environ['ORCH_FENCE_REDIS'])"
    outcome, events = await _through_runner(tmp_path, case.build(tmp_path, work, "ok", True))
    assert outcome.status is StepStatus.SUCCEEDED, outcome.reason
    (started,) = [e for e in events if e["event"] == "step_started"]
    assert started["fences"] == {"redis": int(seen.read_text())}


async def test_a_failure_is_retried_and_each_attempt_recorded(case: Case, tmp_path: Path) -> None:
    task = case.build(tmp_path, "", "not yet", False)
    outcome, events = await _through_runner(tmp_path, task, retries=1)
    assert outcome.status is StepStatus.FAILED and outcome.attempts == 2
    finished = [e for e in events if e["event"] == "step_finished"]
    assert [(e["attempt"], e["status"]) for e in finished] == [(1, "failed"), (2, "failed")]
    assert all("not yet" in str(e["reason"]) for e in finished)
    assert all("usage" not in e for e in finished)  # events of non-LLM steps are unchanged


async def test_a_timeout_stops_the_work(case: Case, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    work = (
        "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)"
    )
    outcome, _ = await _through_runner(
        tmp_path, case.build(tmp_path, work, "never", True), timeout_s=1.0
    )
    assert outcome.status is StepStatus.TIMED_OUT and outcome.reason == "timed out after 1s"
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pidfile.read_text()), 0)


async def test_cancellation_is_let_through_after_cleanup(case: Case, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    work = f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)"
    task = case.build(tmp_path, work, "never", True)
    log = EventLog("run-c", [MemorySink()]).bind(stream="s", step="t")
    with anyio.move_on_after(1.0) as scope:
        await task.driver.perform(_call(tmp_path, task, log))
    assert scope.cancelled_caught  # the driver returned nothing: the cancellation went on
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


async def test_secrets_of_the_environment_do_not_come_back(case: Case, tmp_path: Path) -> None:
    work = "secret = os.environ['API_TOKEN']"
    result = await _perform(tmp_path, case.build(tmp_path, work, f"used {SECRET}", True))
    assert result.ok, result.summary
    texts = [result.summary, result.output, *(e.excerpt for e in result.evidence)]
    assert any("used" in t for t in texts)
    assert not any(SECRET in t for t in texts)
