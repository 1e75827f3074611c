"""``orchestrator mcp`` as Claude Code runs it: a real subprocess spoken to by the official
MCP client over stdio, in front of a real daemon on a private socket and state dir."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests.daemon_process import ROOT, DaemonProcess

PHASE2 = ROOT / "examples" / "phase2.yaml"
SEED = ROOT / "tests" / "streams" / "data" / "000_ab24b73426072cb1.txt"  # the users' Markdown
TOOLS = {
    "validate_plan",
    "submit_plan",
    "run_status",
    "list_runs",
    "wait_run",
    "cancel_run",
    "agents",
    "locks",
    "context_package",
    "evidence",
    "analyze_plan",
    "import_plan",
}
QUICK_PLAN = """
version: 1
plan: mcp-quick
caps: {cpu: 2}
agents:
  worker: {class: cpu, can: [command, sleep]}
streams:
  - id: one
    team: [worker]
    steps:
      - {id: hello, agent: worker, action: command, with: {argv: [sh, -c, "echo hello"]}}
      - {id: pause, agent: worker, action: sleep, with: {seconds: 0.01}}
  - id: two
    team: [worker]
    steps:
      - {id: world, agent: worker, action: command, with: {argv: [sh, -c, "echo world"]}}
"""
SLOW_PLAN = """
version: 1
plan: mcp-cancel
caps: {cpu: 1}
agents:
  worker: {class: cpu, can: [command]}
streams:
  - id: main
    team: [worker]
    steps:
      - {id: wait, agent: worker, action: command, timeout: 5m,
         with: {argv: [sh, -c, "while [ ! -f never ]; do sleep 0.1; done"]}}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path_factory.mktemp("mcp-daemon")).start()
    try:
        yield process
    finally:
        process.close()


@asynccontextmanager
async def mcp_session(
    env: dict[str, str], errlog: Path, *args: str
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "orchestrator", "mcp", *args],
        env=env,
        cwd=ROOT,
    )
    with errlog.open("w") as err:
        async with (
            stdio_client(params, errlog=err) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def call_ok(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result
    text = text_of(result)
    assert "Traceback" not in text
    return text


async def test_tools_are_listed_with_input_and_output_schemas(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
    assert tools["wait_run"].input_schema["required"] == ["run_id"]
    assert set(tools["submit_plan"].input_schema["properties"]) >= {"path", "text", "wait"}
    validate_output = tools["validate_plan"].output_schema
    assert validate_output is not None and "valid" in validate_output["properties"]


async def test_validate_a_good_and_a_bad_plan(daemon: DaemonProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nplan: broken\nstreams:\n  - id: s\n    steps: [{id: x}]\n")
    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        good = await call_ok(session, "validate_plan", path=str(PHASE2))
        from_text = await call_ok(session, "validate_plan", text=PHASE2.read_text())
        broken = await call_ok(session, "validate_plan", path=str(bad))
        missing = await call_ok(session, "validate_plan", path=str(tmp_path / "none.yaml"))
    assert good["valid"] and good["plan"] == "phase-2-strategic-implementation"
    assert good["streams"] == 4 and good["steps"] > 4
    assert from_text["valid"] and from_text["source"] == "<text>"
    assert not broken["valid"] and broken["problems"]
    assert all(p.startswith(f"{bad}:") for p in broken["problems"])
    assert not missing["valid"] and "no such file" in missing["problems"][0]


async def test_submit_phase2_and_follow_it_to_the_end(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        submitted = await call_ok(session, "submit_plan", path=str(PHASE2))
        run_id = submitted["run_id"]
        assert submitted["plan"] == "phase-2-strategic-implementation"
        waited = await session.call_tool(
            "wait_run", {"run_id": run_id, "timeout_s": 300}, progress_callback=on_progress
        )
        assert not waited.is_error, text_of(waited)
        result = waited.structured_content
        assert result is not None
        status = await call_ok(session, "run_status", run_id=run_id)
        runs = await call_ok(session, "list_runs", limit=5)
        succeeded = await call_ok(session, "list_runs", status=["succeeded"])
        evidence = await call_ok(session, "evidence", run_id=run_id)
        one_stream = await call_ok(session, "evidence", run_id=run_id, stream="redis-auth")
        package = await call_ok(
            session, "context_package", path=str(PHASE2), agent="security-validator"
        )
        resources = (await session.list_resources()).resources
        templates = (await session.list_resource_templates()).resource_templates
        uri = f"orchestrator://runs/{run_id}/events"
        contents = (await session.read_resource(uri)).contents

    assert result["finished"] and result["status"] == "succeeded", result
    assert result["steps_done"] == result["steps_total"] > 0 and not result["failed_steps"]
    assert notes, "no progress notification arrived"
    assert notes[-1][0] == result["steps_done"] and notes[-1][1] == result["steps_total"]
    assert [n[0] for n in notes] == sorted(n[0] for n in notes)
    assert all(message and ": " in message for _, _, message in notes)

    assert status["status"] == "succeeded" and len(status["streams"]) == 4
    assert runs["runs"][0]["run_id"] == run_id
    assert run_id in {r["run_id"] for r in succeeded["runs"]}
    assert all(r["status"] == "succeeded" for r in succeeded["runs"])

    assert evidence["run_id"] == run_id and evidence["evidence"] and evidence["gates"]
    assert {e["stream"] for e in one_stream["evidence"]} == {"redis-auth"}
    assert package["agent"] == "security-validator" and package["tokens"] > 0
    assert "security-validator" in package["markdown"]
    assert package["tokens"] <= package["token_limit"]

    assert uri in {str(r.uri) for r in resources}
    assert "orchestrator://runs/{run_id}/events" in {t.uri_template for t in templates}
    events = json.loads(contents[0].text)  # type: ignore[union-attr]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "succeeded"


async def test_submit_with_wait_analyze_and_import(daemon: DaemonProcess, tmp_path: Path) -> None:
    no_streams = tmp_path / "phase.md"
    no_streams.write_text("# Phase 9: tidy up\n\nRotate the logs.\n")
    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        submitted = await call_ok(session, "submit_plan", text=QUICK_PLAN, wait=True)
        analysis = await call_ok(session, "analyze_plan", path=str(PHASE2))
        imported = await call_ok(session, "import_plan", markdown_path=str(SEED))
        from_text = await call_ok(session, "import_plan", text=SEED.read_text())
        checked = await call_ok(session, "validate_plan", text=imported["yaml_text"])
        unusable = await call_error(session, "import_plan", markdown_path=str(no_streams))
        absent = await call_error(session, "import_plan", markdown_path=str(tmp_path / "no.md"))
    assert submitted["wait"]["finished"] and submitted["wait"]["status"] == "succeeded"
    assert submitted["plan"] == "mcp-quick"
    assert submitted["wait"]["steps_done"] == submitted["wait"]["steps_total"] == 3
    assert analysis["plan"] == "phase-2-strategic-implementation"
    assert len(analysis["analysis"]["streams"]) == 4
    assert imported["source"] == str(SEED)
    assert "4 streams, 10 agents, 20 steps" in imported["summary"]
    assert imported["report"]["unmapped"]
    assert from_text["summary"] == imported["summary"] and from_text["source"] == "<text>"
    # An imported plan leaves its agents' drivers unset: validation names what to fill in.
    assert not checked["valid"]
    assert any("has no driver" in p and "(fix: " in p for p in checked["problems"])
    assert f"{no_streams}: no streams found" in unusable and "(fix: " in unusable
    assert "cannot read the Markdown plan" in absent and "(fix: check the path)" in absent


async def test_cancel_a_run(daemon: DaemonProcess, tmp_path: Path) -> None:
    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        run_id = (await call_ok(session, "submit_plan", text=SLOW_PLAN))["run_id"]
        cancelled = await call_ok(session, "cancel_run", run_id=run_id)
        status = await call_ok(session, "run_status", run_id=run_id)
        again = await call_error(session, "cancel_run", run_id=run_id)
        agents = await call_ok(session, "agents", run_id=run_id)
        locks = await call_ok(session, "locks")
    assert cancelled == {"run_id": run_id, "status": "cancelled"}
    assert status["status"] == "cancelled"
    assert "code 1007" in again
    assert agents["agents"] == []
    assert isinstance(locks["resources"], list) and isinstance(locks["classes"], list)


async def test_bad_arguments_are_tool_errors(daemon: DaemonProcess, tmp_path: Path) -> None:
    async with mcp_session(daemon.env(), tmp_path / "mcp.err") as session:
        no_run_id = await call_error(session, "run_status")
        bad_limit = await call_error(session, "list_runs", limit=0)
        bad_status = await call_error(session, "list_runs", status=["done"])
        both = await call_error(session, "validate_plan", path="x.yaml", text="plan: x")
        neither = await call_error(session, "submit_plan")
        unknown_run = await call_error(session, "wait_run", run_id="no-such-run", timeout_s=5)
        invalid = await call_error(session, "submit_plan", text="version: 1\nplan: x\n")
        agent = await call_error(session, "context_package", path=str(PHASE2), agent="nobody")
        stream = await call_error(session, "evidence", run_id="no-such-run")
        with pytest.raises(Exception, match="no run 'no-such-run'"):
            await session.read_resource("orchestrator://runs/no-such-run/events")
    assert "run_id" in no_run_id
    assert "limit" in bad_limit
    assert "status" in bad_status
    assert "either path or text, not both" in both
    assert "either path or text, not neither" in neither
    assert "code 1002" in unknown_run
    assert "code 1001" in invalid and "<mcp text>" in invalid
    assert "nobody" in agent
    assert "no-such-run" in stream


async def test_absent_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    absent = DaemonProcess(tmp_path)  # never started: nothing listens on its socket
    async with mcp_session(absent.env(), tmp_path / "mcp.err") as session:
        tools = (await session.list_tools()).tools
        message = await call_error(session, "list_runs")
        valid = await call_ok(session, "validate_plan", path=str(PHASE2))
        resources = (await session.list_resources()).resources
    assert {t.name for t in tools} == TOOLS
    assert f"no daemon answers on {absent.socket}" in message
    assert "orchestrator daemon" in message and "--start-daemon" in message
    assert valid["valid"]
    assert [str(r.uri) for r in resources] == ["orchestrator://runs"]


async def test_start_daemon_starts_a_detached_one(tmp_path: Path) -> None:
    wanted = DaemonProcess(tmp_path)
    errlog = tmp_path / "mcp.err"
    pid = None
    try:
        async with mcp_session(wanted.env(), errlog, "--start-daemon") as session:
            runs = await call_ok(session, "list_runs")
            line = errlog.read_text()
            found = re.search(r"started a daemon \(pid (\d+)\) on (\S+); its log: (\S+)", line)
            assert found, line
            pid = int(found.group(1))
            assert found.group(2) == str(wanted.socket)
            assert found.group(3) == str(wanted.state / "daemon.log")
        assert runs == {"runs": []}
        # Detached: it outlives the MCP server.
        assert wanted.call("health")["status"] == "ok"
    finally:
        if pid is not None:
            _stop(pid, wanted.socket)


def _stop(pid: int, socket_path: Path) -> None:
    """SIGTERM the detached daemon and wait (with a deadline) until its socket is gone."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while socket_path.exists() and _answers(socket_path):
        assert time.monotonic() < deadline, "the started daemon did not stop"
        time.sleep(0.05)


def _answers(socket_path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(str(socket_path))
        except OSError:
            return False
    return True


def test_the_cli_does_not_import_mcp_until_the_command_runs() -> None:
    code = "import sys, orchestrator.cli; print(sorted(m for m in sys.modules if m == 'mcp'))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
