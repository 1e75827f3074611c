"""`orchestrator report`: a real run's events, stored in the SQLite store, rendered to one
self-contained HTML file with its Gantt timeline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.store import open_store
from orchestrator.store.base import RunRecord
from orchestrator.web.gantt import critical_path, render_svg, timeline_of
from tests.helpers import plan_from, run_plan, sleep_step, stream


def _command(sid: str, script: str) -> dict[str, Any]:
    return {
        "id": sid,
        "agent": "cpu-agent",
        "action": "command",
        "with": {"argv": ["sh", "-c", script]},
    }


def _real_run(workdir: Path) -> list[dict[str, Any]]:
    plan = plan_from(
        [
            stream("build", [_command("compile", "exit 0"), sleep_step("pack", seconds=0.01)]),
            stream("broken", [_command("boom", "exit 7")]),
            stream("holder", [sleep_step("hold", seconds=0.05, locks=["redis"])]),
        ]
    )
    _, events = anyio.run(lambda: run_plan(plan, workdir=workdir))
    return [{**e, "run_id": "r1"} for e in events]


async def _store(state_dir: Path, events: list[dict[str, Any]]) -> None:
    async with open_store(None, state_dir=state_dir) as store:
        await store.create_run(
            RunRecord(run_id="r1", plan="p<x>", plan_source="version: 1\n", workdir=state_dir)
        )
        await store.append_events("r1", events)


def test_report_is_self_contained_escaped_and_has_one_lane_per_stream(tmp_path: Path) -> None:
    events = _real_run(tmp_path)
    anyio.run(_store, tmp_path, events)
    out = tmp_path / "run.html"
    result = CliRunner().invoke(cli, ["report", "r1", "-o", str(out), "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html)
    assert "p<x>" not in html and "p&lt;x&gt;" in html
    assert html.count('<g class="lane"') == 3
    assert html.count('class="bar status-succeeded') == 3
    assert html.count('<tr class="stream"') == 3 and "2/2" in html
    assert html.count("holds-lock") == 1 and "holds redis" in html
    assert len(re.findall(r'class="bar status-failed[ "]', html)) == 1


def test_a_step_still_running_is_drawn_to_the_end_of_the_span() -> None:
    events = [
        {
            "event": "step_queued",
            "stream": "s",
            "step": "a",
            "attempt": 1,
            "ts": "2026-01-01T00:00:00Z",
        },
        {
            "event": "step_started",
            "stream": "s",
            "step": "a",
            "attempt": 1,
            "ts": "2026-01-01T00:00:01Z",
        },
        {"event": "heartbeat", "stream": "s", "ts": "2026-01-01T00:00:03Z"},
    ]
    svg = render_svg(events)
    assert svg.count('class="wait"') == 1 and svg.count('class="bar status-running"') == 1


def test_report_of_an_unknown_run_names_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["report", "nope", "-o", str(tmp_path / "x.html"), "--state-dir", str(tmp_path)]
    )
    assert result.exit_code != 0
    assert "orchestrator runs" in result.output and "Traceback" not in result.output


def test_the_critical_path_follows_the_lock_a_step_waited_for(tmp_path: Path) -> None:
    # chain/s1 takes redis first; locked/late queues for it behind `pre` and runs longest,
    # so the run's length is s1 then late; side/quick and chain/s2 end earlier.
    plan = plan_from(
        [
            stream(
                "chain",
                [
                    sleep_step("s1", seconds=0.3, locks=["redis"]),
                    sleep_step("s2", seconds=0.1),
                ],
            ),
            stream("side", [sleep_step("quick", seconds=0.05)]),
            stream(
                "locked",
                [sleep_step("pre", seconds=0.05), sleep_step("late", seconds=0.6, locks=["redis"])],
            ),
        ]
    )
    _, events = anyio.run(lambda: run_plan(plan, workdir=tmp_path))
    path = critical_path(timeline_of(events).bars)
    assert [b.key for b in path] == ["chain/s1", "locked/late"]
    svg = render_svg(events)
    assert svg.count("critical-mark") == 2
    assert len(re.findall(r'class="bar status-succeeded[^"]* critical"', svg)) == 2


def test_rollback_steps_and_band_are_drawn() -> None:
    def at(second: int) -> str:
        return f"2026-01-01T00:00:{second:02d}Z"

    step = {"stream": "s", "attempt": 1}
    events = [
        {"event": "step_started", "step": "a", "ts": at(0), **step},
        {"event": "step_finished", "step": "a", "status": "failed", "ts": at(1), **step},
        {"event": "rollback_started", "stream": "s", "ts": at(1)},
        {"event": "step_queued", "step": "undo-a", "phase": "rollback", "ts": at(1), **step},
        {"event": "step_started", "step": "undo-a", "phase": "rollback", "ts": at(2), **step},
        {"event": "heartbeat", "stream": "s", "ts": at(4)},
    ]
    svg = render_svg(events)
    assert svg.count('class="rollback-span"') == 1 and "rolling back" in svg
    assert svg.count("phase-rollback") == 1 and svg.count("rollback-hatch") == 1
    assert 'class="bar status-running phase-rollback' in svg  # running: never red
