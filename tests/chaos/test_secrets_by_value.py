"""Secrets planted in every channel a step has never come out of any output.

Each secret value goes in through one way a run learns secrets (a ``pass_env`` variable, a
step's ``with.env``, an external agent's ``driver.env``, the Redis URL's password, the
store DSN's password) and is sent back out through every channel a step has: stdout,
stderr (quoted in ``reason`` and ``stderr_tail``), metrics (string metrics of an agent),
evidence and an external agent's answer. Then every output is searched for it: the event
file, the run store's rows, the Redis event stream, the process's own log.

The plan text itself is stored as written (a daemon resumes from it), so a plan that spells
a secret out keeps it there: the rows' ``plan_source`` is left out of the search.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import asyncpg
import redis

from tests.daemon_process import DaemonProcess
from tests.servers import RedisServer
from tests.servers_postgres import PostgresServer
from tests.test_cli_run import ROOT

AGENT = """
import json, os, sys
sys.stdin.read()
key, token = os.environ["API_KEY"], os.environ["DEPLOY_TOKEN"]
print(f"agent saw {key}", file=sys.stderr)
print(json.dumps({
    "status": "succeeded",
    "summary": f"used {key} and {token}",
    "metrics": {"note": key, "tok": token},
    "evidence": [{"check": f"checked {key}", "excerpt": f"{key} {token}", "metrics": {"s": key}}],
}))
"""


def _plan(tmp: Path, with_env_secret: str, driver_secret: str) -> Path:
    (tmp / "agent.py").write_text(AGENT)
    shout = 'echo "token $DEPLOY_TOKEN pw $DB_PASSWORD"; echo "stderr $DB_PASSWORD" >&2'
    fail = (
        r'printf "\033[31mboom %s\033]0;t\007\n" "$DB_PASSWORD" >&2; '
        'echo "out $DEPLOY_TOKEN"; exit 3'
    )
    plan = tmp / "plan.yaml"
    plan.write_text(
        textwrap.dedent(f"""
        version: 1
        plan: secrets
        caps: {{cpu: 2, light: 2}}
        resources: [db]
        agents:
          worker: {{class: cpu, can: [command]}}
          talker:
            class: light
            driver:
              command: [{sys.executable}, agent.py]
              pass_env: [PATH, DEPLOY_TOKEN]
              env: {{API_KEY: {driver_secret}}}
        streams:
          - id: ok
            team: [worker, talker]
            steps:
              - id: shout
                agent: worker
                action: command
                locks: [db]
                with:
                  argv: [sh, -c, {json.dumps(shout)}]
                  env: {{DB_PASSWORD: {with_env_secret}}}
                  parse_metrics: true
              - id: ask
                agent: talker
                instruction: Report what you used
                needs: [shout]
          - id: bad
            team: [worker]
            steps:
              - id: fail
                agent: worker
                action: command
                with:
                  argv: [sh, -c, {json.dumps(fail)}]
                  env: {{DB_PASSWORD: {with_env_secret}}}
        """)
    )
    return plan


def _secret(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(8)}"


def _found(text: str, planted: dict[str, str]) -> list[str]:
    return [name for name, value in planted.items() if value in text]


def _redis_dump(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        parts = []
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"stream":
                parts += [repr(entry) for entry in client.xrange(key)]
            elif kind == b"string":
                parts.append(repr(client.get(key)))
            elif kind == b"hash":
                parts.append(repr(client.hgetall(key)))
        return "\n".join(parts)
    finally:
        client.close()


def _sqlite_rows(path: Path) -> str:
    assert path.is_file()
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = []
        for table in tables:
            cursor = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            rows += [
                repr({n: v for n, v in zip(names, row, strict=True) if n != "plan_source"})
                for row in cursor
            ]
        return "\n".join(rows)
    finally:
        conn.close()


async def _postgres_rows(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        rows = []
        for t in tables:
            rows += [
                str(r[0])
                for r in await conn.fetch(
                    f'SELECT to_jsonb(t) - \'plan_source\' FROM "{t[0]}"."{t[1]}" t'
                )
            ]
        return "\n".join(rows)
    finally:
        await conn.close()


def _check_events(text: str) -> None:
    """The run did what the test needs: every channel carried (masked) text."""
    events = [json.loads(line) for line in text.splitlines()]
    finished = {e["step"]: e for e in events if e["event"] == "step_finished"}
    assert finished["shout"]["status"] == "succeeded"
    assert finished["ask"]["status"] == "succeeded", finished["ask"]
    assert finished["ask"]["metrics"]["note"] == "***"
    assert finished["fail"]["status"] == "failed"
    assert finished["fail"]["reason"] == "sh exited 3: boom ***"
    assert "***" in finished["fail"]["stderr_tail"]
    assert "\x1b" not in text and "\\u001b" not in text
    evidence = [e for e in events if e["event"] == "evidence_collected"]
    assert any("***" in e["excerpt"] for e in evidence)


def test_cli_run_masks_every_planted_secret(tmp_path: Path, redis_server: RedisServer) -> None:
    planted = {
        "pass_env": _secret("passenv"),
        "with.env": _secret("withenv"),
        "driver.env": _secret("driverenv"),
        "redis url": redis_server.password,
    }
    plan = _plan(tmp_path, planted["with.env"], planted["driver.env"])
    events = tmp_path / "events.jsonl"
    env = {
        **os.environ,
        "ORCH_STATE_DIR": str(tmp_path / "state"),
        "ORCH_PASS_ENV": json.dumps(["PATH", "HOME", "DEPLOY_TOKEN"]),
        "DEPLOY_TOKEN": planted["pass_env"],
        "ORCH_NAMESPACE": f"secrets-{secrets.token_hex(4)}",
        "ORCH_LOG_FORMAT": "json",
    }
    redis_args = ["--events", str(events), "--redis", redis_server.url]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "run", str(plan), "--plain", *redis_args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr  # the `bad` stream fails on purpose
    text = events.read_text()
    outputs = {
        "event file": text,
        "store rows": _sqlite_rows(tmp_path / "state" / "runs.sqlite3"),
        "redis": _redis_dump(redis_server.url),
        "stdout and log": done.stdout + done.stderr,
    }
    leaks = {where: _found(out, planted) for where, out in outputs.items()}
    assert leaks == {where: [] for where in outputs}, leaks
    _check_events(text)
    assert "step_finished" in outputs["redis"] and "step_finished" in outputs["store rows"]


def _state_files_text(state: Path) -> str:
    """Every file under ``state``, as text. The containment watchdog outlives the daemon a
    moment to remove its records: a file gone between the listing and the read held
    nothing any more, and is left out."""
    texts: list[str] = []
    for path in state.rglob("*"):
        try:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
        except (FileNotFoundError, IsADirectoryError):
            continue
    return "\n".join(texts)


def test_daemon_masks_every_planted_secret(
    tmp_path: Path, redis_server: RedisServer, fresh_postgres: PostgresServer
) -> None:
    planted = {
        "pass_env": _secret("passenv"),
        "with.env": _secret("withenv"),
        "driver.env": _secret("driverenv"),
        "redis url": redis_server.password,
        "store dsn": fresh_postgres.password,
    }
    plan = _plan(tmp_path, planted["with.env"], planted["driver.env"])
    daemon = DaemonProcess(
        tmp_path,
        store=fresh_postgres.dsn,
        ORCH_REDIS_URL=redis_server.url,
        ORCH_NAMESPACE=f"secrets-{secrets.token_hex(4)}",
        ORCH_PASS_ENV=json.dumps(["PATH", "HOME", "DEPLOY_TOKEN"]),
        DEPLOY_TOKEN=planted["pass_env"],
    ).start()
    try:
        submitted = daemon.cli("submit", str(plan))
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.strip()
        daemon.wait_for(run_id, {"failed"})
        watched = daemon.cli("watch", run_id, "--json")
    finally:
        daemon.close()
    outputs = {
        "state files": _state_files_text(daemon.state),
        "store rows": anyio.run(_postgres_rows, fresh_postgres.dsn),
        "redis": _redis_dump(redis_server.url),
        "daemon log": daemon.log_text(),
        "watch": watched.stdout + watched.stderr,
    }
    leaks = {where: _found(out, planted) for where, out in outputs.items()}
    assert leaks == {where: [] for where in outputs}, leaks
    _check_events(watched.stdout)
    assert "step_finished" in outputs["store rows"]
