"""Output that is kept: every step's stdout/stderr tails (bounded, masked) stored with its
result, read back by ``RunStore.step_outputs`` on both backends and shown by ``evidence``."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink, Redactor
from orchestrator.evidence_view import evidence_from_events, render_evidence
from orchestrator.scheduler import Scheduler, SchedulerConfig
from orchestrator.step_output import STDERR_TAIL, STDOUT_TAIL, output_fields
from orchestrator.store import RunStore
from tests.helpers import plan_from, stream
from tests.orchestrator.store import test_store as contract
from tests.orchestrator.store.test_store import a_run, events_of

backend = contract.backend
store = contract.store

SECRET = "hunter2-sw0rdfish"
SCRIPT = (
    "import sys; print('line one'); print('x' * 20000); print('last out'); "
    f"print('token {SECRET}', file=sys.stderr); print('warn: last err', file=sys.stderr)"
)
PLAN = plan_from(
    [
        stream(
            "s",
            [
                {
                    "id": "talk",
                    "agent": "light-agent",
                    "action": "command",
                    "with": {"argv": [sys.executable, "-c", SCRIPT]},
                },
                {
                    "id": "quiet",
                    "agent": "light-agent",
                    "action": "command",
                    "with": {"argv": [sys.executable, "-c", "pass"]},
                },
            ],
        ),
        stream(
            "f",
            [
                {
                    "id": "boom",
                    "agent": "light-agent",
                    "action": "command",
                    "with": {"argv": [sys.executable, "-c", "print('dying'); raise SystemExit(3)"]},
                }
            ],
        ),
    ],
    agents={"light-agent": {"class": "light", "can": ["command"]}},
    caps={"light": None},
)


@pytest.fixture(scope="module")
def run_events(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    sink = MemorySink()
    scheduler = Scheduler(
        PLAN,
        run_id="run-test",
        coordinator=InProcessCoordinator(),
        registry=builtin_registry(),
        events=EventLog("run-test", [sink], redactor=Redactor([SECRET])),
        config=SchedulerConfig(
            workdir=tmp_path_factory.mktemp("work"), env={"PATH": "/usr/bin:/bin"}
        ),
    )
    anyio.run(scheduler.run)
    return sink.events


def test_output_fields_split_and_bound_the_tails() -> None:
    fields = output_fields("a" * (STDOUT_TAIL + 10) + "\n[stderr]\n" + "e" * (STDERR_TAIL + 5))
    assert fields == {"stdout_tail": "a" * STDOUT_TAIL, "stderr_tail": "e" * STDERR_TAIL}
    assert output_fields("[stderr]\nonly err") == {"stderr_tail": "only err"}
    assert output_fields("") == {}


async def test_every_steps_tails_are_kept_and_read_back(
    store: RunStore, run_events: list[dict[str, Any]]
) -> None:
    await store.create_run(a_run("r"))
    await store.append_events("r", events_of(run_events, "r"))
    outputs = await store.step_outputs("r")
    by_step = {o.step: o for o in outputs}
    assert set(by_step) == {"talk", "quiet", "boom"}
    talk = by_step["talk"]
    assert talk.status == "succeeded" and talk.attempt == 1 and talk.stream == "s"
    assert talk.stdout_tail.rstrip().endswith("last out")
    assert len(talk.stdout_tail) <= STDOUT_TAIL and "line one" not in talk.stdout_tail
    assert "warn: last err" in talk.stderr_tail
    assert SECRET not in talk.stderr_tail and "token ***" in talk.stderr_tail
    assert (by_step["quiet"].stdout_tail, by_step["quiet"].stderr_tail) == ("", "")
    assert by_step["boom"].status == "failed" and "dying" in by_step["boom"].stdout_tail

    assert [o.step for o in await store.step_outputs("r", stream="f")] == ["boom"]
    assert [o.step for o in await store.step_outputs("r", stream="s", step="talk")] == ["talk"]
    assert await store.step_outputs("no-such-run") == []


def test_evidence_shows_the_tails(run_events: list[dict[str, Any]]) -> None:
    text = render_evidence(evidence_from_events("run-test", run_events), excerpt_lines=2)
    assert "  output of step talk (attempt 1, succeeded)" in text
    assert "    stderr:   | token ***\n              | warn: last err" in text
    assert "output of step quiet" not in text  # it printed nothing
    assert SECRET not in text
