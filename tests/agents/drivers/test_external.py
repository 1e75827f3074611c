"""The external driver against real agent processes (small Python scripts)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from agents.base import ActionContext, ActionResult
from agents.drivers import AgentRequest, ExternalParams, protocol_schemas, run_external
from streams.model import DriverSpec

MARKDOWN = "# Context Package - writer\n\n## Your Steps\n1. `patch`\n"
SECRET = "sk-test-0123456789abcdef"
VALID_ANSWER = {
    "status": "succeeded",
    "summary": "patched docker-compose.yml\n  with requirepass",
    "evidence": [
        {
            "id": "compose-patched",
            "check": "grep requirepass docker-compose.yml",
            "excerpt": "requirepass: ***",
            "metrics": {"matches": 1},
        },
        {"check": "redis-cli ping"},
    ],
    "metrics": {"redis.noauth_errors": 0, "redis.mode": "auth"},
}


def agent(tmp_path: Path, body: str, name: str = "agent.py") -> list[str]:
    """argv running ``body`` (a Python script) with this interpreter."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def answering(tmp_path: Path, answer: Any, exit_code: int = 0) -> list[str]:
    """An agent that reads its request, prints ``answer`` (JSON, or text as is), exits."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    return agent(
        tmp_path,
        f"""
        import sys
        sys.stdin.read()
        sys.stdout.write({text!r})
        sys.exit({exit_code})
        """,
    )


def context(tmp_path: Path, **overrides: Any) -> ActionContext:
    """A step's context with the environment the step runner builds: the daemon's allowed
    variables plus the ORCH_ step variables."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": "/nonexistent",
        "OPENAI_API_KEY": SECRET,
        "NOT_PASSED": "daemon-only",
        "ORCH_RUN_ID": "run-1",
        "ORCH_PLAN": "demo",
        "ORCH_STREAM": "redis-auth",
        "ORCH_STEP": "patch",
        "ORCH_AGENT": "writer",
        "ORCH_ATTEMPT": "2",
        "ORCH_FENCE_REDIS": "7",
    }
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "stream": "redis-auth",
        "step": "patch",
        "agent": "writer",
        "attempt": 2,
        "fences": {"redis": 7},
        "env": env,
        "workdir": tmp_path,
        "kill_grace_s": 0.5,
    }
    fields.update(overrides)
    return ActionContext(**fields)


def params(command: list[str], *, deadline_s: float | None = 20.0, **driver: Any) -> ExternalParams:
    return ExternalParams(
        driver=DriverSpec(command=command, **{"kill_grace": 0.5, **driver}),
        plan="demo",
        title="Patch compose",
        instruction="Update docker-compose.yml with Redis password configuration",
        package_markdown=MARKDOWN,
        package_tokens=21,
        package_token_limit=4000,
        package_sha256=hashlib.sha256(MARKDOWN.encode()).hexdigest(),
        deadline_s=deadline_s,
    )


async def run(ctx: ActionContext, p: ExternalParams, limit_s: float = 30) -> ActionResult:
    with anyio.fail_after(limit_s):
        return await run_external(ctx, p)


# -- a well-behaved agent -----------------------------------------------------------------


async def test_well_behaved_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEST_SECRET", "hunter2")
    (tmp_path / "work").mkdir()
    dump = tmp_path / "dump.json"
    command = agent(
        tmp_path,
        f"""
        import json, os, sys
        request = json.load(sys.stdin)
        # /proc/self/environ is the environment as exec'd (before Python's locale coercion)
        raw = open("/proc/self/environ", "rb").read().split(b"\\0")
        env = dict(item.decode().split("=", 1) for item in raw if item)
        with open({str(dump)!r}, "w") as f:
            json.dump({{"request": request, "env": env, "cwd": os.getcwd()}}, f)
        print(json.dumps({VALID_ANSWER!r}))
        """,
    )
    ctx = context(tmp_path)
    p = params(command, cwd="work", pass_env=["PATH", "OPENAI_API_KEY", "NOT_SET"], env={"A": "1"})
    sent_at = datetime.now(UTC)
    result = await run(ctx, p)

    assert result.ok, result.summary
    assert result.summary == "patched docker-compose.yml with requirepass"
    assert result.exit_code == 0
    assert result.metrics == {"redis.noauth_errors": 0.0, "redis.mode": "auth"}

    seen = json.loads(dump.read_text())
    request = seen["request"]
    assert {k: request[k] for k in ("protocol", "run_id", "plan", "stream", "step", "agent")} == {
        "protocol": 1,
        "run_id": "run-1",
        "plan": "demo",
        "stream": "redis-auth",
        "step": "patch",
        "agent": "writer",
    }
    assert request["attempt"] == 2 and request["title"] == "Patch compose"
    assert request["instruction"] == p.instruction
    assert request["action"] is None and request["with"] == {}
    assert request["package"] == {
        "markdown": MARKDOWN,
        "tokens": 21,
        "token_limit": 4000,
        "sha256": p.package_sha256,
    }
    assert request["fences"] == {"redis": 7}
    assert request["cwd"] == str((tmp_path / "work").resolve())
    assert request["answer_limit"] == p.driver.answer_limit
    # The step timeout (20s) is sooner than the test's own limit (30s): it is the deadline.
    assert 19.0 < request["deadline_s"] <= 20.0
    deadline = datetime.fromisoformat(request["deadline"].replace("Z", "+00:00"))
    assert request["deadline"].endswith("Z")
    assert abs(deadline - (sent_at + timedelta(seconds=20))) < timedelta(seconds=5)
    jsonschema.validate(request, protocol_schemas()["AgentRequest"])
    assert AgentRequest.model_validate(request).fences == {"redis": 7}

    assert seen["cwd"] == str((tmp_path / "work").resolve())
    # The token by which the agent's whole process tree is found and ended (containment).
    assert re.fullmatch(r"\d+-[0-9a-f]{8}\.\d+", seen["env"].pop("ORCH_STEP_TOKEN"))
    assert seen["env"] == {
        "PATH": os.environ["PATH"],
        "OPENAI_API_KEY": SECRET,
        "A": "1",
        "ORCH_RUN_ID": "run-1",
        "ORCH_PLAN": "demo",
        "ORCH_STREAM": "redis-auth",
        "ORCH_STEP": "patch",
        "ORCH_AGENT": "writer",
        "ORCH_ATTEMPT": "2",
        "ORCH_FENCE_REDIS": "7",
    }


async def test_claims_are_marked_unverified(tmp_path: Path) -> None:
    result = await run(context(tmp_path), params(answering(tmp_path, VALID_ANSWER)))
    assert result.ok
    first, second = result.evidence
    assert not first.verified and first.source == "agent"
    assert first.id == "compose-patched" and first.metrics == {"matches": 1.0}
    assert first.check == "grep requirepass docker-compose.yml"
    assert second.check == "redis-cli ping" and second.excerpt == ""
    assert result.details["evidence"][0] == {
        "id": "compose-patched",
        "check": "grep requirepass docker-compose.yml",
        "excerpt": "requirepass: ***",
        "metrics": {"matches": 1.0},
        "verified": False,
        "source": "agent:writer",
    }
    assert all(e["verified"] is False for e in result.details["evidence"])
    assert result.details["claimed_metrics"] == ["redis.mode", "redis.noauth_errors"]


async def test_agent_reporting_failure(tmp_path: Path) -> None:
    answer = {"status": "failed", "summary": "NOAUTH: could not reach redis", "metrics": {"n": 3}}
    result = await run(context(tmp_path), params(answering(tmp_path, answer)))
    assert not result.ok
    assert result.summary == "agent reported failure: NOAUTH: could not reach redis"
    assert result.metrics == {"n": 3.0}


async def test_action_steps_are_passed_with_their_parameters(tmp_path: Path) -> None:
    dump = tmp_path / "request.json"
    command = agent(
        tmp_path,
        f"""
        import sys
        open({str(dump)!r}, "w").write(sys.stdin.read())
        print('{{"status": "succeeded", "summary": "ran it"}}')
        """,
    )
    p = params(command).model_copy(
        update={"instruction": None, "action": "redis.config_set", "with_": {"key": "maxmemory"}}
    )
    result = await run(context(tmp_path), p)
    assert result.ok
    request = json.loads(dump.read_text())
    assert request["instruction"] is None
    assert request["action"] == "redis.config_set" and request["with"] == {"key": "maxmemory"}


# -- misbehaving agents ---------------------------------------------------------------------


async def test_garbage_answer(tmp_path: Path) -> None:
    garbage = "Sure! Here is the answer: \x1b[31m{status: ok}\x1b[0m " + "x" * 500
    result = await run(context(tmp_path), params(answering(tmp_path, garbage)))
    assert not result.ok
    assert "answered something that is not JSON: 'Sure! Here is the answer: " in result.summary
    assert "\x1b" not in result.summary and "\\x1b[31m" in result.summary
    assert len(result.summary) < 300
    assert "Sure!" in result.output  # the raw excerpt is kept with the result


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            {"status": "succeeded", "summary": "done", "confidence": 0.9},
            "unknown field 'confidence'",
        ),
        ({"status": "done", "summary": "x"}, "status: Input should be 'succeeded' or 'failed'"),
        ({"status": "succeeded"}, "missing field 'summary'"),
        (
            {"status": "succeeded", "summary": "x", "metrics": {"ok": True}},
            "metrics.ok: must be a number or a string, not a boolean",
        ),
        (
            {"status": "succeeded", "summary": "x", "evidence": [{"check": "c", "extra": 1}]},
            "unknown field 'evidence.0.extra'",
        ),
        ({"status": "succeeded", "summary": "x" * 2001}, "summary: String should have at most"),
        (["succeeded"], "Input should be an object"),
    ],
)
async def test_answer_breaking_the_schema(tmp_path: Path, answer: Any, reason: str) -> None:
    result = await run(context(tmp_path), params(answering(tmp_path, answer)))
    assert not result.ok
    assert "answer does not follow the protocol: " in result.summary
    assert reason in result.summary


async def test_non_zero_exit_names_the_last_stderr_line(tmp_path: Path) -> None:
    command = agent(
        tmp_path,
        """
        import sys
        sys.stdin.read()
        print('{"status": "succeeded", "summary": "looks fine"}')
        sys.stderr.write("loading model\\nboom: model llama3 not found\\n")
        sys.exit(3)
        """,
    )
    result = await run(context(tmp_path), params(command))
    assert not result.ok and result.exit_code == 3
    assert result.summary == f"agent {sys.executable!r} exited 3: boom: model llama3 not found"
    assert "loading model" in result.output


async def test_killed_by_a_signal(tmp_path: Path) -> None:
    command = agent(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = await run(context(tmp_path), params(command))
    assert not result.ok and result.summary.endswith("was killed by SIGKILL")


async def test_no_answer(tmp_path: Path) -> None:
    result = await run(context(tmp_path), params(answering(tmp_path, "\n")))
    assert not result.ok and result.summary.endswith("exited 0 without an answer on stdout")


async def test_50_mb_answer_fails_fast_with_bounded_memory(tmp_path: Path) -> None:
    command = agent(
        tmp_path,
        """
        import sys
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        """,
    )
    limit = 1 << 20
    started = anyio.current_time()
    result = await run(context(tmp_path), params(command, answer_limit=limit), limit_s=20)
    assert not result.ok
    assert result.summary.endswith(f"answer larger than {limit} bytes; process group killed")
    # What was read stops one read (64 KiB at most) past the limit; what is kept is smaller.
    assert limit < result.output_bytes <= limit + 65536 + 1024
    assert len(result.output) < 80 * 1024
    assert anyio.current_time() - started < 10


async def test_agent_closing_stdin_without_reading(tmp_path: Path) -> None:
    command = agent(
        tmp_path,
        """
        import os
        os.close(0)
        print('{"status": "succeeded", "summary": "did not need the request"}')
        """,
    )
    big = params(command)
    markdown = "# big\n" + "word " * 400_000  # 2 MB: more than any pipe buffer
    big = big.model_copy(
        update={
            "package_markdown": markdown,
            "package_sha256": hashlib.sha256(markdown.encode()).hexdigest(),
        }
    )
    result = await run(context(tmp_path), big)
    assert result.ok and result.summary == "did not need the request"


async def test_program_that_cannot_start(tmp_path: Path) -> None:
    result = await run(context(tmp_path), params(["no-such-agent-xyz"]))
    assert not result.ok
    assert result.summary.startswith("could not start agent 'no-such-agent-xyz'")


async def test_missing_working_directory(tmp_path: Path) -> None:
    result = await run(context(tmp_path), params(answering(tmp_path, VALID_ANSWER), cwd="nope"))
    assert not result.ok and "does not exist" in result.summary


async def test_secrets_given_to_the_agent_do_not_come_back(tmp_path: Path) -> None:
    command = agent(
        tmp_path,
        """
        import os, sys
        key = os.environ["OPENAI_API_KEY"]
        sys.stderr.write(f"using key {key}\\n")
        print(f"error: bad key {key}")
        """,
    )
    result = await run(context(tmp_path), params(command, pass_env=["OPENAI_API_KEY"]))
    assert not result.ok
    assert SECRET not in result.summary and SECRET not in result.output
    assert "bad key ***" in result.summary and "using key ***" in result.output


# -- hangs ----------------------------------------------------------------------------------

HANGING = """
import os, signal, subprocess, sys, time
if {ignore_term}:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child too
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
with open({pids!r} + ".tmp", "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}")
os.rename({pids!r} + ".tmp", {pids!r})
time.sleep(300)
"""


@pytest.mark.parametrize("ignore_term", [False, True], ids=["honours-term", "ignores-term"])
async def test_hang_is_stopped_with_its_children(tmp_path: Path, ignore_term: bool) -> None:
    pids = tmp_path / "pids"
    command = agent(tmp_path, HANGING.format(ignore_term=ignore_term, pids=str(pids)))
    grace_s = 1.0
    results: list[ActionResult] = []

    async def call() -> None:
        results.append(await run_external(context(tmp_path), params(command, kill_grace=grace_s)))

    with anyio.move_on_after(math.inf) as timeout:  # the step timeout, fired once it runs
        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await _wait_for(pids)
            cancelled_at = anyio.current_time()
            timeout.deadline = cancelled_at
    stopped_s = anyio.current_time() - cancelled_at

    assert timeout.cancelled_caught and not results  # the cancellation went on
    for pid in pids.read_text().split():
        await _gone(int(pid))
    if ignore_term:
        assert grace_s * 0.8 <= stopped_s < grace_s + 5  # SIGKILL, after the grace
    else:
        assert stopped_s < grace_s  # SIGTERM was enough


async def test_hang_without_an_enclosing_deadline_uses_deadline_s(tmp_path: Path) -> None:
    command = agent(tmp_path, "import time\ntime.sleep(300)\n")
    result = await run_external(context(tmp_path), params(command, deadline_s=0.5))
    assert not result.ok
    assert result.summary == (
        f"agent {sys.executable!r} did not answer within 0.5s; stopped with SIGTERM "
        "(SIGKILL after 0.5s)"
    )


async def test_children_left_behind_are_killed_and_escapees_not_waited_for(
    tmp_path: Path,
) -> None:
    pids = tmp_path / "pids"
    command = agent(
        tmp_path,
        f"""
        import json, os, subprocess, sys
        sys.stdin.read()
        sleeper = [sys.executable, "-c", "import time; time.sleep(300)"]
        stays = subprocess.Popen(sleeper)
        leaves = subprocess.Popen(sleeper, start_new_session=True)  # keeps stdout open
        open({str(pids)!r}, "w").write(f"{{stays.pid}} {{leaves.pid}}")
        print(json.dumps({{"status": "succeeded", "summary": "done"}}), flush=True)
        """,
    )
    try:
        result = await run(context(tmp_path), params(command, kill_grace=0.5), limit_s=10)
        assert result.ok and result.summary == "done"
        stays, _ = (int(p) for p in pids.read_text().split())
        await _gone(stays)
    finally:
        if pids.exists():  # the escapee is this test's to end
            _, leaves = (int(p) for p in pids.read_text().split())
            os.kill(leaves, signal.SIGKILL)


async def _wait_for(path: Path) -> None:
    with anyio.fail_after(10):
        while not await anyio.Path(path).exists():  # noqa: ASYNC110 - no event for a file
            await anyio.sleep(0.02)


async def _gone(pid: int) -> None:
    with anyio.fail_after(5):
        while _alive(pid):  # noqa: ASYNC110 - the kernel offers no event for another's pid
            await anyio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False
