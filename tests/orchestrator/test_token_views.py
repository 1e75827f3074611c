"""Tokens in ``orchestrator status`` and the progress views (issue 12): real runs whose LLM
steps are answered by a scripted OpenAI-compatible server (each request costs 100 tokens in
and 20 out; the counter brain makes 3 requests), through ``orchestrator run`` and through a
daemon subprocess, live, finished and after the daemon restarts. A stream without model
calls shows no tokens; JSON always has ``usage``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator.progress import RunView, render_view
from tests.agents.drivers.llm.openai_server import Scripted, counter_brain, openai_server
from tests.daemon_process import DaemonProcess

PLAN = """
version: 1
plan: llm-usage
caps: {{io: 2, light: null}}
agents:
  writer:
    class: io
    can: [file.read, file.write]
    driver: {{llm: {{provider: openai, model: scripted, base_url: "{base_url}"}}}}
  helper: {{class: light, can: [command]}}
streams:
  - id: talk
    team: [writer, helper]
    steps:
      - {{id: bump, agent: writer, instruction: Add one to counter.txt}}
      - id: hold
        agent: helper
        action: command
        with: {{argv: [sh, -c, "while [ ! -f {go} ]; do sleep 0.05; done"]}}
  - id: quiet
    team: [helper]
    steps:
      - {{id: hello, agent: helper, action: command, with: {{argv: ["true"]}}}}
"""

SPENT = {"input_tokens": 300, "output_tokens": 60, "requests": 3}
NONE = {"input_tokens": 0, "output_tokens": 0, "requests": 0}
SHOWN = "300 in, 60 out, 3 requests"


@pytest.fixture
def server() -> Iterator[Scripted]:
    with openai_server(counter_brain) as scripted:
        yield scripted


def write_plan(tmp: Path, base_url: str) -> Path:
    (tmp / "counter.txt").write_text("0\n")
    path = tmp / "plan.yaml"
    path.write_text(PLAN.format(base_url=base_url, go=tmp / "go"))
    return path


def rendered(view: RunView) -> str:
    console = Console(record=True, width=250, color_system=None)
    console.print(render_view(view, view.last_ts))
    return console.export_text()


def test_orchestrator_run_shows_tokens_per_stream_and_run(server: Scripted, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, server.base_url)
    (tmp_path / "go").touch()
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # the run's working directory
        env={**DaemonProcess(tmp_path).env()},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "counter.txt").read_text() == "1\n"
    lines = done.stdout.splitlines()  # a pipe: the plain view
    bump = next(line for line in lines if "[talk] bump succeeded" in line)
    assert bump.endswith(f"(tokens: {SHOWN})")
    assert not [line for line in lines if "[quiet]" in line and "tokens" in line]
    assert next(line for line in lines if "[talk] succeeded" in line).endswith(f"(tokens: {SHOWN})")
    assert lines[-1].endswith(f"succeeded (tokens: {SHOWN})")

    # The live view, from the run's event file: a tokens column and the run's total.
    path = done.stderr.split("events in ", 1)[1].split()[0]
    events = [json.loads(line) for line in Path(path).read_text().splitlines()]
    view = RunView()
    for event in events:
        view.apply(event)
    assert view.usage.as_dict() == SPENT
    assert view.streams["talk"].usage.as_dict() == SPENT
    text = rendered(view)
    header, columns = text.splitlines()[:2]
    assert header.endswith(f"tokens: {SHOWN}")
    assert columns.split()[-1] == "tokens"
    assert next(r for r in text.splitlines() if r.startswith("talk")).endswith(SHOWN)

    # Without model calls the view is as it always was: no tokens anywhere.
    quiet = RunView()
    for event in events:
        if event.get("stream") in (None, "quiet"):
            quiet.apply({k: v for k, v in event.items() if k != "usage"})
    text = rendered(quiet)
    assert "tokens" not in text and "llm-usage" in text


def status_json(daemon: DaemonProcess, run_id: str) -> dict[str, Any]:
    shown = daemon.cli("status", run_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    reply: dict[str, Any] = json.loads(shown.stdout)
    return reply


def usage_of(reply: dict[str, Any]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    return reply["usage"], {s["stream"]: s["usage"] for s in reply["streams"]}


def test_status_shows_tokens_live_finished_and_after_a_restart(
    server: Scripted, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, server.base_url)
    daemon = DaemonProcess(tmp_path).start()
    try:
        run_id = daemon.cli("submit", str(plan)).stdout.strip()
        deadline = time.monotonic() + 60
        # Live: the LLM step is done, the run holds on `hold`. The live view is applied just
        # after the store commits a batch, so wait for both rather than read them in a race.
        while True:
            reply = status_json(daemon, run_id)
            steps = {s["step"]: s["status"] for st in reply["streams"] for s in st["steps"]}
            if steps.get("hold") == "running" and reply["usage"] == SPENT:
                break
            assert time.monotonic() < deadline, reply
            time.sleep(0.05)
        assert reply["status"] == "running"
        assert usage_of(reply) == (SPENT, {"talk": SPENT, "quiet": NONE})
        table = daemon.cli("status", run_id)
        assert table.returncode == 0, table.stderr
        first, columns = table.stdout.splitlines()[:2]
        assert first.endswith(f"(tokens: {SHOWN})") and columns.split()[-1] == "tokens"
        talk = [r.strip() for r in table.stdout.splitlines() if r.strip().startswith("talk")]
        assert talk and talk[0].endswith(SHOWN), table.stdout

        (tmp_path / "go").touch()
        daemon.wait_for(run_id, {"succeeded"})
        assert usage_of(status_json(daemon, run_id)) == (SPENT, {"talk": SPENT, "quiet": NONE})
    finally:
        daemon.close()

    again = DaemonProcess(tmp_path).start()  # from the store alone
    try:
        assert usage_of(status_json(again, run_id)) == (SPENT, {"talk": SPENT, "quiet": NONE})
        table = again.cli("status", run_id).stdout
        assert table.splitlines()[0].endswith(f"(tokens: {SHOWN})")
    finally:
        again.close()
    assert len(server.requests) == 3


def test_status_of_a_run_without_model_calls_shows_no_tokens(tmp_path: Path) -> None:
    plan = tmp_path / "quiet.yaml"
    plan.write_text(
        "plan: quiet\ncaps: {light: null}\nagents:\n  helper: {class: light, can: [command]}\n"
        "streams:\n  - id: only\n    team: [helper]\n    steps:\n"
        '      - {id: a, agent: helper, action: command, with: {argv: ["true"]}}\n'
    )
    daemon = DaemonProcess(tmp_path).start()
    try:
        done = daemon.cli("submit", str(plan), "--wait", "--plain")
        assert done.returncode == 0, done.stderr
        assert "tokens" not in done.stdout + done.stderr
        run_id = json.loads(daemon.cli("status", "-o", "json").stdout)["runs"][0]["run_id"]
        assert usage_of(status_json(daemon, run_id)) == (NONE, {"only": NONE})
        table = daemon.cli("status", run_id)
        assert table.returncode == 0 and "tokens" not in table.stdout, table.stderr
    finally:
        daemon.close()
