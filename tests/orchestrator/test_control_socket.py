"""The control socket against the JSON-RPC 2.0 specification, over a real daemon's socket.

The conformance table takes each example of the specification's "Examples" section, with
methods the daemon has in place of ``subtract``/``sum``/``get_data``. Positional params are
not supported (documented in docs/protocol.md): those examples get ``-32602``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import jsonrpcclient
import pytest

from orchestrator.daemon import control_socket
from orchestrator.daemon.rpc import ErrorCode, RpcError, rpc_error_of
from orchestrator.daemon.rpc_dispatch import MAX_BATCH, answer_line
from orchestrator.store.errors import StoreError, StoreUnavailable
from tests.daemon_process import ROOT, DaemonProcess
from tests.helpers import small_tmpfs
from tests.rpc_wire import exchange, shape
from tests.servers_postgres import PostgresServer

PLAN = """
version: 1
plan: socket-test
caps: {light: null}
agents:
  worker: {class: light, can: [sleep]}
streams:
  - id: main
    team: [worker]
    steps:
      - {id: quick, agent: worker, action: sleep, with: {seconds: 0.01}}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path_factory.mktemp("socket"), ORCH_IDLE_TIMEOUT_S="30").start()
    yield process
    process.close()


def _req(method: str, params: Any = None, id: Any = None, *, note: bool = False) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if not note:
        message["id"] = id
    return json.dumps(message)


# (name, line, expected shapes of the answers: [] when none is due)
SPEC_EXAMPLES: list[tuple[str, str, list[Any]]] = [
    ("positional params 1", _req("runs.get", ["x"], 1), [("error", 1, -32602)]),
    ("positional params 2", _req("runs.get", ["y", "z"], 2), [("error", 2, -32602)]),
    ("named params 1", _req("runs.list", {"limit": 1, "status": ["failed"]}, 3), [("result", 3)]),
    ("named params 2", _req("runs.list", {"status": ["failed"], "limit": 1}, 4), [("result", 4)]),
    ("notification 1", _req("health", {}, note=True), []),
    ("notification 2", _req("foobar", note=True), []),
    ("non-existent method", _req("foobar", id="1"), [("error", "1", -32601)]),
    (
        "invalid JSON",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        [("error", None, -32700)],
    ),
    (
        "invalid Request object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        [("error", None, -32600)],
    ),
    (
        "batch, invalid JSON",
        '[{"jsonrpc": "2.0", "method": "health", "params": {}, "id": "1"},'
        '{"jsonrpc": "2.0", "method"]',
        [("error", None, -32700)],
    ),
    ("empty array", "[]", [("error", None, -32600)]),
    ("invalid batch, not empty", "[1]", [[("error", None, -32600)]]),
    ("invalid batch", "[1,2,3]", [[("error", None, -32600)] * 3]),
    (
        "batch",
        "["
        + ",".join(
            [
                _req("health", {}, "1"),
                _req("health", {}, note=True),
                _req("runs.list", {"limit": 1}, "2"),
                '{"foo": "boo"}',
                _req("foo.get", {"name": "myself"}, "5"),
                _req("locks.list", None, "9"),
            ]
        )
        + "]",
        [
            [
                ("result", "1"),
                ("result", "2"),
                ("error", None, -32600),
                ("error", "5", -32601),
                ("result", "9"),
            ]
        ],
    ),
    (
        "batch, all notifications",
        f"[{_req('health', {}, note=True)},{_req('runs.list', {}, note=True)}]",
        [],
    ),
]


@pytest.mark.parametrize(
    ("line", "expected"),
    [pytest.param(line, expected, id=name) for name, line, expected in SPEC_EXAMPLES],
)
def test_specification_examples(daemon: DaemonProcess, line: str, expected: list[Any]) -> None:
    assert [shape(a) for a in exchange(daemon.socket, line.encode())] == expected


def test_a_notification_with_an_error_gets_no_answer(daemon: DaemonProcess) -> None:
    for line in (
        _req("runs.get", {"run_id": "nope"}, note=True),  # 1002 if it had an id
        _req("runs.get", {"bogus": 1}, note=True),  # -32602
        _req("runs.get", ["x"], note=True),  # positional
        _req("events.subscribe", {"run_id": "nope"}, note=True),  # a stream: ignored
    ):
        assert exchange(daemon.socket, line.encode()) == []


def test_id_null_is_a_request_not_a_notification(daemon: DaemonProcess) -> None:
    [answer] = exchange(daemon.socket, _req("health", {}, None).encode())
    assert shape(answer) == ("result", None)
    assert set(answer["result"]) == {
        "status",
        "version",
        "uptime_s",
        "active_runs",
        "store",
        "coordinator",
    }


def test_streaming_method_inside_a_batch_is_refused(daemon: DaemonProcess) -> None:
    line = f"[{_req('events.subscribe', {'run_id': 'x'}, 1)},{_req('health', {}, 2)}]"
    [answer] = exchange(daemon.socket, line.encode())
    assert shape(answer) == [("error", 1, -32600), ("result", 2)]
    assert "cannot be part of a batch" in answer[0]["error"]["message"]


def test_batch_limit(daemon: DaemonProcess) -> None:
    full = "[" + ",".join(_req("health", {}, i) for i in range(MAX_BATCH)) + "]"
    [answers] = exchange(daemon.socket, full.encode())
    assert [a["id"] for a in answers] == list(range(MAX_BATCH))
    over = "[" + ",".join(_req("health", {}, i) for i in range(MAX_BATCH + 1)) + "]"
    [refused] = exchange(daemon.socket, over.encode())
    assert shape(refused) == ("error", None, -32600) and "split" in refused["error"]["message"]


def test_runs_list_bad_status_names_the_allowed_values(daemon: DaemonProcess) -> None:
    [answer] = exchange(daemon.socket, _req("runs.list", {"status": ["bogus"]}, 1).encode())
    assert shape(answer) == ("error", 1, ErrorCode.INVALID_PARAMS)
    assert "'succeeded'" in answer["error"]["message"]


def test_submit_of_a_plan_past_the_1_mib_line_is_accepted_and_past_16_mib_refused(
    daemon: DaemonProcess,
) -> None:
    padded = PLAN + "# " + "x" * (3 << 20) + "\n"  # a 3 MiB plan: beyond the 1 MiB first tier
    [answer] = exchange(daemon.socket, _req("submit", {"plan_text": padded}, 1).encode())
    assert shape(answer) == ("result", 1), answer
    assert daemon.wait_for(answer["result"]["run_id"], {"succeeded"})["status"] == "succeeded"
    huge = PLAN + "# " + "x" * (17 << 20) + "\n"
    [refused] = exchange(daemon.socket, _req("submit", {"plan_text": huge}, 2).encode())
    assert shape(refused) == ("error", 2, ErrorCode.INVALID_PARAMS)
    assert "16 MiB" in refused["error"]["message"]


def test_jsonrpcclient_as_an_independent_client(daemon: DaemonProcess) -> None:
    single = exchange(daemon.socket, json.dumps(jsonrpcclient.request("health")).encode())
    ok = jsonrpcclient.parse(single[0])
    assert isinstance(ok, jsonrpcclient.Ok) and ok.result["status"] == "ok"
    batch = [
        jsonrpcclient.request("runs.list", params={"limit": 1}),
        jsonrpcclient.request("runs.get", params={"run_id": "nope"}),
        jsonrpcclient.notification("health"),
    ]
    [answers] = exchange(daemon.socket, json.dumps(batch).encode())
    parsed = list(jsonrpcclient.parse(answers))
    assert isinstance(parsed[0], jsonrpcclient.Ok) and "runs" in parsed[0].result
    assert isinstance(parsed[1], jsonrpcclient.Error) and parsed[1].code == ErrorCode.RUN_NOT_FOUND
    assert len(parsed) == 2  # the notification got no answer
    note = json.dumps(jsonrpcclient.notification("health")).encode()
    assert exchange(daemon.socket, note) == []


# --- expected conditions get their own codes, mapped in one place -------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (StoreUnavailable("postgresql://u@h/db", "connection refused"), -32001),
        (StoreError("runs.db", "schema is newer than this code"), -32002),
        (OSError(errno.ENOSPC, "No space left on device", "/state/runs/x"), -32003),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), -32003),
        (ExceptionGroup("g", [ValueError("x"), StoreUnavailable("db", "lost")]), -32001),
        (RpcError(1002, "no run"), 1002),
    ],
    ids=["store-down", "store-failed", "enospc", "edquot", "group", "rpc-error"],
)
def test_expected_conditions_map_to_their_codes(exc: BaseException, code: int) -> None:
    mapped = rpc_error_of(exc)
    assert mapped is not None and mapped.code == code
    assert "fix" in mapped.message or code in (1002, -32001, -32002)


def test_sqlite_disk_full_maps_to_disk_full() -> None:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # as sqlite3's C code sets it
    mapped = rpc_error_of(error)
    assert mapped is not None and mapped.code == ErrorCode.DISK_FULL


def test_bugs_stay_internal_errors_and_do_not_leak_their_text() -> None:
    assert rpc_error_of(KeyError("x")) is None

    async def call(method: str, params: dict[str, Any]) -> Any:
        raise RuntimeError("secret-password-in-a-bug")

    async def store_down(method: str, params: dict[str, Any]) -> Any:
        raise StoreUnavailable("postgresql://u@h/db", "connection refused")

    async def main() -> tuple[bytes | None, bytes | None]:
        line = _req("health", {}, 1).encode()
        return await answer_line(line, call), await answer_line(line, store_down)

    bug, down = anyio.run(main)
    assert bug is not None and down is not None
    assert json.loads(bug)["error"]["code"] == -32603 and b"secret" not in bug
    assert json.loads(down)["error"]["code"] == -32001


async def test_a_bug_in_one_connection_ends_that_connection_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mechanism, not a decoder: whatever escapes the answering of a line (here a
    RuntimeError from answer_line itself) gets -32603, closes that connection, and the
    server goes on serving others."""
    real = answer_line

    async def buggy(line: bytes, call: Any, **kwargs: Any) -> bytes | None:
        if b"boom" in line:
            raise RuntimeError("a bug")
        return await real(line, call, **kwargs)

    monkeypatch.setattr(control_socket, "answer_line", buggy)

    async def handler(method: str, params: dict[str, Any], conn: Any) -> Any:
        return {"status": "ok"}

    server = control_socket.ControlServer(tmp_path / "s.sock", handler)

    async def roundtrip(line: bytes) -> list[Any]:
        async with await anyio.connect_unix(server.path) as stream:
            await stream.send(line + b"\n")
            data = b""
            with anyio.fail_after(30):
                while True:
                    try:
                        data += await stream.receive()
                    except anyio.EndOfStream:
                        break
                    if line != b"boom" and data.endswith(b"\n"):
                        break
        return [json.loads(x) for x in data.splitlines()]

    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        [crashed] = await roundtrip(b"boom")  # then EndOfStream: the connection was closed
        assert crashed["error"]["code"] == ErrorCode.INTERNAL_ERROR
        [fine] = await roundtrip(_req("health", {}, 1).encode())
        assert fine["result"] == {"status": "ok"}
        tg.cancel_scope.cancel()


# --- a starting daemon: clients wait; readiness via sd_notify --------------------------------


def test_submit_right_after_starting_the_daemon_waits_for_it(tmp_path: Path) -> None:
    # A long wait: on a loaded machine the daemon's start alone can take seconds.
    process = DaemonProcess(tmp_path, ORCH_CONNECT_WAIT_S="120")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    log = process.log.open("ab")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon"], stdout=log, stderr=log,
        env=process.env(), cwd=ROOT,
    )  # fmt: skip
    try:
        submitted = process.cli("submit", str(plan), "--wait")  # no wait for the socket
        assert submitted.returncode == 0, submitted.stderr + process.log_text()
        assert submitted.stdout.strip()
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
    assert not (tmp_path / "ctl.sock.pid").exists()  # removed on a clean exit


def test_no_daemon_is_said_clearly_after_the_bounded_wait(tmp_path: Path) -> None:
    process = DaemonProcess(tmp_path, ORCH_CONNECT_WAIT_S="0.3")
    absent = process.cli("status")
    assert absent.returncode == 3 and "no daemon is running" in absent.stderr
    assert "ORCH_CONNECT_WAIT_S" in absent.stderr and "Traceback" not in absent.stderr
    # A pid file left by a killed daemon: the pid is gone, and the message says so.
    child = subprocess.Popen(["true"])
    child.wait()
    (tmp_path / "ctl.sock.pid").write_text(f"{child.pid}\n")
    stale = process.cli("status")
    assert stale.returncode == 3 and f"pid {child.pid}) has exited" in stale.stderr


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready_and_stopping(tmp_path: Path, abstract: bool) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        if abstract:
            name = f"orch-test-{tmp_path.name}"
            systemd.bind(b"\0" + name.encode())
            target = "@" + name
        else:
            target = str(tmp_path / "notify.sock")
            systemd.bind(target)
        systemd.settimeout(60)
        process = DaemonProcess(tmp_path, NOTIFY_SOCKET=target).start()
        try:
            assert systemd.recv(4096) == b"READY=1"
            assert process.call("health")["status"] == "ok"
            assert process.proc is not None
            assert (tmp_path / "ctl.sock.pid").read_text().strip() == str(process.proc.pid)
            assert process.stop() == 0
            assert systemd.recv(4096) == b"STOPPING=1"
        finally:
            process.close()


def test_store_down_gets_its_own_code_and_the_daemon_goes_on(
    tmp_path: Path, fresh_postgres: PostgresServer
) -> None:
    process = DaemonProcess(tmp_path, store=fresh_postgres.dsn).start()
    try:
        assert "runs" in process.call("runs.list")
        fresh_postgres.stop()
        [answer] = exchange(process.socket, _req("runs.list", {}, 1).encode())
        assert answer["error"]["code"] == ErrorCode.STORE_UNAVAILABLE, answer
        assert fresh_postgres.password not in json.dumps(answer)
        fresh_postgres.start()
        assert "runs" in process.call("runs.list", timeout_s=60)  # back without a restart
        assert process.proc is not None and process.proc.poll() is None
    finally:
        process.close()


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs for the daemon's state (needs root, as CI has)."""
    with small_tmpfs(tmp_path / "state", "4m") as state:
        yield state


def test_disk_full_gets_its_own_code_and_submitting_works_once_space_returns(
    tmp_path: Path, small_state_dir: Path
) -> None:
    process = DaemonProcess(tmp_path).start()  # its state dir is the small tmpfs
    assert process.state == small_state_dir
    filler = small_state_dir / "filler"
    try:
        with filler.open("wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        submit = _req("submit", {"plan_text": PLAN}, 1).encode()
        [full] = exchange(process.socket, submit)
        assert full["error"]["code"] == ErrorCode.DISK_FULL, full
        assert "fix:" in full["error"]["message"]
        assert process.call("health")["status"] == "ok"
        filler.unlink()
        [ok] = exchange(process.socket, submit)
        assert shape(ok) == ("result", 1), ok
    finally:
        process.close()
