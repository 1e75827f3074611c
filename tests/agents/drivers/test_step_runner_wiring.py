"""The external driver run the way the scheduler runs it: a StepJob through the StepRunner,
holding a lock, under the step timeout."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from agents import builtin_registry
from agents.drivers import DriverTask, ExternalDriver, ExternalParams, PlanDrivers
from agents.plans import load_plan
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

EXAMPLE_PLAN = Path(__file__).resolve().parents[3] / "examples" / "agent-plan.yaml"

MARKDOWN = "# Context Package - writer\n"


def test_sentence_steps_go_to_the_agent_driver_and_no_plan_can_name_it() -> None:
    plan = load_plan(EXAMPLE_PLAN)
    drivers = PlanDrivers(plan, builtin_registry())
    sentence = next(s for st in plan.streams for s in st.steps if s.instruction is not None)
    task = drivers.for_step(sentence)
    assert isinstance(task.driver, ExternalDriver) and isinstance(task.params, ExternalParams)
    assert task.package is drivers.packages[sentence.agent]
    # The built-in registry, against which plans are validated, has no driver in it.
    assert task.driver.name not in builtin_registry()


async def _run_step(tmp_path: Path, script: str, timeout_s: float) -> tuple[StepOutcome, Path]:
    path = tmp_path / "agent.py"
    path.write_text(textwrap.dedent(script))
    params = ExternalParams(
        driver=DriverSpec(command=[sys.executable, str(path)], kill_grace=0.5),
        plan="demo",
        instruction="Restart Redis",
        package_markdown=MARKDOWN,
        package_tokens=8,
        package_token_limit=4000,
        package_sha256=hashlib.sha256(MARKDOWN.encode()).hexdigest(),
        deadline_s=timeout_s,
    )
    runner = StepRunner(
        run_id="run-1",
        plan_name="demo",
        coordinator=InProcessCoordinator(),
        config=StepRunnerConfig(
            workdir=tmp_path,
            env={"PATH": os.environ["PATH"], "SECRET_DSN": "postgresql://u:pw@h/db"},
            kill_grace_s=0.5,
            release_timeout_s=5.0,
            backoff_s=0.01,
            backoff_max_s=0.01,
        ),
        drain=Drain(),
        rng=random.Random(0),
    )
    job = StepJob(
        stream="redis-auth",
        step="restart",
        agent="writer",
        task=DriverTask(ExternalDriver(), params),
        resource_class="light",
        cap=None,
        locks=("redis",),
        priority=0,
        timeout_s=timeout_s,
        retries=0,
        lock_timeout_s=None,
    )
    log = EventLog("run-1", [MemorySink()]).bind(stream="redis-auth")
    with anyio.fail_after(30):
        return await runner.run(job, log), tmp_path


async def test_a_step_through_the_step_runner(tmp_path: Path) -> None:
    dump = tmp_path / "seen.json"
    outcome, _ = await _run_step(
        tmp_path,
        f"""
        import json, os, sys
        request = json.load(sys.stdin)
        json.dump({{"request": request, "env": dict(os.environ)}}, open({str(dump)!r}, "w"))
        print(json.dumps({{"status": "succeeded", "summary": "restarted"}}))
        """,
        timeout_s=15.0,
    )
    assert outcome.status is StepStatus.SUCCEEDED and outcome.reason == "restarted"
    seen = json.loads(dump.read_text())
    fence = seen["request"]["fences"]["redis"]
    assert seen["env"]["ORCH_FENCE_REDIS"] == str(fence)
    assert seen["env"]["ORCH_STEP"] == "restart" and "SECRET_DSN" not in seen["env"]
    assert 14.0 < seen["request"]["deadline_s"] <= 15.0


async def test_a_hanging_agent_times_the_step_out(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = anyio.current_time()
    outcome, _ = await _run_step(
        tmp_path,
        f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pidfile)!r}, "w").write(str(os.getpid()))
        time.sleep(300)
        """,
        timeout_s=1.0,
    )
    assert outcome.status is StepStatus.TIMED_OUT and outcome.reason == "timed out after 1s"
    assert anyio.current_time() - started < 10
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(pidfile.read_text()), 0)
