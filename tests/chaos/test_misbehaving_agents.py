"""Chaos: external agents that misbehave fail their step with the reason and leave nothing.

One ``orchestrator run`` of a plan whose agents (real processes, each a small shell script)
print garbage, print far more than their answer limit, hang while ignoring SIGTERM, or leave
``setsid`` grandchildren holding their pipes. Each step fails with a reason that says what
happened, and once the run has exited no process of any agent is left (``/proc``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.procs import survivors

ROOT = Path(__file__).resolve().parent.parent.parent

#: stream id -> (agent script, what the step's reason must contain)
AGENTS = {
    "garbage": ('cat >/dev/null; echo "not json {{{{"', "answered something that is not JSON"),
    "huge": ("cat >/dev/null; head -c 50000000 /dev/zero", "answer larger than 65536 bytes"),
    "hang": ('trap "" TERM; cat >/dev/null; sleep 1000.{n} & sleep 1001.{n}', "timed out"),
    "escape": (
        "setsid sleep 1002.{n} & setsid sh -c 'sleep 1003.{n} & wait' & cat >/dev/null; "
        "echo boom >&2; exit 3",
        "exited 3: boom",
    ),
    "escape-answering": (
        "setsid sleep 1004.{n} & cat >/dev/null; "
        'echo \'{{"status": "failed", "summary": "gave up"}}\'',
        "agent reported failure: gave up",
    ),
}


def _plan(nonce: str) -> str:
    agents, streams = [], []
    for name, (script, _) in AGENTS.items():
        body = json.dumps(script.format(n=nonce))
        agents.append(f"""
  {name}:
    class: light
    driver:
      command: [sh, -c, {body}]
      pass_env: [PATH]
      answer_limit: 65536
      kill_grace: 1s""")
        streams.append(f"""
  - id: {name}
    team: [{name}]
    steps:
      - id: act
        agent: {name}
        instruction: Do the thing
        timeout: 3s
        retries: 0""")
    return f"""
version: 1
plan: misbehaving-agents
caps: {{light: {len(AGENTS)}}}
agents:{"".join(agents)}
streams:{"".join(streams)}
"""


def test_each_misbehaving_agent_fails_its_step_and_leaves_nothing(
    tmp_path: Path, nonce: str
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(_plan(nonce))
    events = tmp_path / "events.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(plan),
            "--plain",
            "--events",
            str(events),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ORCH_STATE_DIR": str(tmp_path / "state")},
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert survivors(nonce) == [], "an agent's process outlived its step"
    finished = {
        e["stream"]: e
        for e in map(json.loads, events.read_text().splitlines())
        if e["event"] == "step_finished"
    }
    assert set(finished) == set(AGENTS)
    for name, (_, reason) in AGENTS.items():
        expected = "timed_out" if name == "hang" else "failed"
        assert finished[name]["status"] == expected, (name, finished[name])
        assert reason in finished[name]["reason"], (name, finished[name]["reason"])
