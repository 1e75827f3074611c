"""The scheduler on the Redis coordinator: the same invariants, and several processes at once.

Redis needs real time (asyncio), so durations here are milliseconds instead of the virtual
seconds of test_scheduler_properties.py; the plans come from the same generator.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings

from orchestrator.coordination.redis import RedisCoordinator
from orchestrator.events import read_events
from orchestrator.verify import verify_events
from tests.helpers import plan_from, run_plan
from tests.orchestrator.test_scheduler_properties import _expected_status, plans
from tests.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def _milliseconds(spec: dict[str, Any]) -> dict[str, Any]:
    """The drawn plan with every sleep scaled from tenths of seconds to hundredths."""
    for stream in spec["streams"]:
        for step in stream["steps"]:
            step["with"]["seconds"] = step["with"]["seconds"] / 10
    return spec


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plans())
def test_random_plans_keep_every_invariant_on_redis(
    redis_server: RedisServer, drawn: tuple[dict[str, Any], dict[str, bool]]
) -> None:
    spec, fails = drawn
    spec = _milliseconds(spec)
    plan = plan_from(spec["streams"], caps=spec["caps"])

    async def go() -> Any:
        async with RedisCoordinator(
            redis_server.url, namespace=f"t{secrets.token_hex(4)}", lease_s=10
        ) as coordinator:
            with anyio.fail_after(60):  # real seconds: hitting this means a deadlock
                return await run_plan(plan, coordinator=coordinator)

    result, events = anyio.run(go)
    report = verify_events([events])
    assert report.ok, report.render()
    expected = _expected_status(spec, fails)
    assert {sid: o.status.value for sid, o in result.streams.items()} == expected


PLAN = """
version: 1
plan: contention
caps: {cpu: 2, io: 1, light: null}
resources: [redis, database]
agents:
  a: {class: cpu, can: [sleep]}
  b: {class: io, can: [sleep]}
  c: {class: light, can: [sleep]}
streams:
"""


def test_several_processes_never_exceed_caps_or_share_a_lock(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    streams = []
    for s in range(4):
        steps = "\n".join(
            f"      - {{id: t{i}, agent: {'abc'[(s + i) % 3]}, action: sleep, "
            f"with: {{seconds: 0.02}}, needs: [], locks: [{['redis', 'database'][i % 2]}]}}"
            for i in range(8)
        )
        streams.append(f"  - id: s{s}\n    team: [a, b, c]\n    steps:\n{steps}")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN + "\n".join(streams) + "\n")
    env = {
        **os.environ,
        "ORCH_STATE_DIR": str(tmp_path / "state"),
        "ORCH_REDIS_URL": redis_server.url,
        "ORCH_NAMESPACE": f"t{secrets.token_hex(4)}",
    }
    logs = [tmp_path / f"events-{n}.jsonl" for n in range(3)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                str(plan),
                "--plain",
                "--events",
                str(log),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for log in logs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert redis_server.password not in err  # the URL's password never shows
    report = verify_events([read_events(log) for log in logs])
    assert report.ok, report.render()
    assert report.runs == 3
    assert report.peak["cpu"] == 2 and report.peak["io"] == 1  # the caps were reached, globally
    assert report.lock_grants["redis"] == report.lock_grants["database"] == 3 * 16
    merged = subprocess.run(
        [sys.executable, "-m", "orchestrator", "verify-log", *map(str, logs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert merged.returncode == 0 and merged.stdout.startswith("OK: ")


def test_watchers_follow_a_run_through_the_redis_event_stream(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    from agents import builtin_registry
    from orchestrator.runs import execute_plan
    from orchestrator.settings import Settings

    plan = plan_from(
        [
            {
                "id": "s",
                "team": ["light-agent"],
                "steps": [
                    {
                        "id": f"t{i}",
                        "agent": "light-agent",
                        "action": "sleep",
                        "with": {"seconds": 0.05},
                    }
                    for i in range(5)
                ],
            }
        ]
    )
    namespace = f"t{secrets.token_hex(4)}"

    async def go() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with (
            RedisCoordinator(redis_server.url, namespace=namespace, lease_s=2) as runner,
            RedisCoordinator(redis_server.url, namespace=namespace, lease_s=2) as watcher,
            anyio.create_task_group() as tg,
        ):

            async def follow() -> None:
                async for event in watcher.follow_events("run-x", from_start=True):
                    seen.append(event)
                    if event["event"] == "run_finished":
                        tg.cancel_scope.cancel()

            tg.start_soon(follow)
            await execute_plan(
                plan,
                run_id="run-x",
                settings=Settings(state_dir=tmp_path),
                coordinator=runner,
                registry=builtin_registry(),
                sinks=[],
                workdir=tmp_path,
            )
            with anyio.fail_after(30):
                await anyio.sleep_forever()  # until the watcher has seen run_finished
        return seen

    seen = anyio.run(go)
    assert seen[0]["event"] == "run_started" and seen[-1]["event"] == "run_finished"
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert sum(e["event"] == "step_finished" for e in seen) == 5
