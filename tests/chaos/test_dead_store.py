"""Chaos: the daemon's PostgreSQL store dies mid-run (killed, as a crash or an OOM would)
and is started again.

While it is down no step starts (its start could not be recorded: write-ahead), the daemon
keeps answering and logs ``store_unavailable``. Back within ``store_wait_s``: the run goes on
and nothing stored or emitted meanwhile is lost. Down for longer: the waiting step fails
"not started" by name, and the run records that end once the store is back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess
from tests.servers_postgres import PostgresServer

pytestmark = pytest.mark.slow

STEPS = 4
PLAN = """
version: 1
plan: {name}
caps: {{cpu: 1}}
agents:
  worker: {{class: cpu, can: [command]}}
streams:
  - id: main
    team: [worker]
    steps:
      - id: s0
        agent: worker
        action: command
        with: {{argv: [sh, -c, "echo s0 >> {log}; while [ ! -f {go} ]; do sleep 0.05; done"]}}
{rest}"""


def write_plan(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    log, go = tmp / f"{name}.log", tmp / f"{name}.go"
    rest = "".join(
        f"      - {{id: s{n}, agent: worker, action: command, "
        f'with: {{argv: [sh, -c, "echo s{n} >> {log}"]}}}}\n'
        for n in range(1, STEPS)
    )
    path = tmp / f"{name}.yaml"
    path.write_text(PLAN.format(name=name, log=log, go=go, rest=rest))
    return path, log, go


def wait_for(predicate: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def logged(daemon: DaemonProcess, name: str, run_id: str) -> bool:
    for line in daemon.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == name and entry.get("run_id") == run_id:
                return True
    return False


def started(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("outage", ["short", "long"])
def test_a_dead_postgres_store_stops_steps_from_starting(
    tmp_path: Path, fresh_postgres: PostgresServer, outage: str
) -> None:
    wait_s = "60" if outage == "short" else "2"
    daemon = DaemonProcess(tmp_path, store=fresh_postgres.dsn, ORCH_STORE_WAIT_S=wait_s).start()
    try:
        plan, log, go = write_plan(tmp_path, outage)
        run_id = daemon.cli("submit", str(plan)).stdout.strip()
        assert run_id, daemon.log_text()[-2000:]
        wait_for(lambda: started(log) == ["s0"], "s0 started")

        fresh_postgres.kill()
        go.touch()  # s0 ends; s1's start cannot be recorded
        wait_for(lambda: logged(daemon, "store_unavailable", run_id), "store_unavailable")
        assert daemon.call("health")["status"] == "ok"
        if outage == "long":
            wait_for(lambda: logged(daemon, "step_not_started", run_id), "gave up")
        assert started(log) == ["s0"]  # nothing started while nothing could be recorded
        fresh_postgres.start()

        run = daemon.wait_for(run_id, {"succeeded", "failed"})
        steps = {s["step"]: s for s in run["streams"][0]["steps"]}
        if outage == "short":
            assert run["status"] == "succeeded"
            assert started(log) == [f"s{n}" for n in range(STEPS)]  # each once
        else:
            assert run["status"] == "failed"
            assert steps["s1"]["status"] == "failed"
            assert "not started" in steps["s1"]["reason"]
            assert "store_wait_s=2s" in steps["s1"]["reason"]
            assert started(log) == ["s0"]
        assert logged(daemon, "store_recovered", run_id)
        events = [
            json.loads(line) for line in daemon.cli("watch", run_id, "--json").stdout.splitlines()
        ]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # none lost
        assert events[-1]["event"] == "run_finished"
    finally:
        daemon.close()
