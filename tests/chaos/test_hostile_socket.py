"""Hostile lines on the control socket of a real daemon that has a run in progress.

Each line of the table goes to the daemon on its own connection; the test asserts the
answer (its JSON-RPC error code, no answer, or a closed connection), that the daemon still
answers ``health`` on that connection and the next, and that the run keeps running. A
hypothesis test throws random JSON-ish bytes at the decoder and dispatcher in-process.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.daemon.rpc import RpcError
from orchestrator.daemon.rpc_dispatch import answer_line
from orchestrator.store.errors import StoreUnavailable
from tests.daemon_process import DaemonProcess
from tests.rpc_wire import exchange

PLAN = """
version: 1
plan: hostile-socket
caps: {{light: null}}
agents:
  worker: {{class: light, can: [command]}}
streams:
  - id: main
    team: [worker]
    steps:
      - id: hold
        agent: worker
        action: command
        with:
          argv: [sh, -c, "echo started > {started}; while [ ! -f {go} ]; do sleep 0.05; done"]
"""

HEALTH = '{"jsonrpc":"2.0","id":1,"method":"health"%s}'
CLOSED = "closed"


def _health(extra: str = "") -> bytes:
    return (HEALTH % extra).encode()


def _req(id_text: str = "1", method: str = '"health"', params: str | None = None) -> bytes:
    body = f'"jsonrpc":"2.0","id":{id_text},"method":{method}'
    return ("{" + body + (f',"params":{params}' if params is not None else "") + "}").encode()


def _batch(n: int) -> bytes:
    entries = (f'{{"jsonrpc":"2.0","id":{i},"method":"health"}}' for i in range(n))
    return ("[" + ",".join(entries) + "]").encode()


def _note(method: str, params: str) -> bytes:
    return f'{{"jsonrpc":"2.0","method":"{method}","params":{params}}}'.encode()


# (name, line factory, expected: an error code, a list of codes (a batch), None (no answer
# at all), CLOSED, or "result")
HOSTILE: list[tuple[str, Callable[[], bytes], Any]] = [
    ("nested arrays 1000 (was RecursionError)", lambda: b"[" * 1000 + b"]" * 1000, -32600),
    ("nested arrays 100000", lambda: b"[" * 100_000 + b"]" * 100_000, -32700),
    ("nested objects 1000", lambda: b'{"a":' * 1000 + b"1" + b"}" * 1000, -32600),
    ("deep params", lambda: _req(params='{"a":' + "[" * 200 + "]" * 200 + "}"), -32600),
    ("unclosed nesting", lambda: b"[" * 500_000, -32700),
    ("id 2**64 (was TypeError)", lambda: _req("18446744073709551616"), -32600),
    ("id lone surrogate (was TypeError)", lambda: _req(r'"\ud800"'), -32700),
    ("id lone low surrogate", lambda: _req(r'"\udfff"'), -32700),
    ("id -2**63-1", lambda: _req("-9223372036854775809"), -32600),
    ("id int64 max", lambda: _req("9223372036854775807"), "result"),
    ("id 100000 digits", lambda: _req("9" * 100_000), -32700),
    ("id 1e400", lambda: _req("1e400"), -32700),
    ("id NaN", lambda: _req("NaN"), -32700),
    ("id true", lambda: _req("true"), -32600),
    ("id array", lambda: _req("[1]"), -32600),
    ("id object", lambda: _req('{"a":1}'), -32600),
    ("id 512 KiB string", lambda: _req('"' + "i" * (1 << 19) + '"'), "result"),
    ("health padded past 1 MiB", lambda: _req(params='{"x":"' + "p" * (2 << 20) + '"}'), 1004),
    ("batch past 1 MiB", lambda: b"[" + b",".join([_req()] * 30_000) + b"]", 1004),
    ("method lone surrogate", lambda: _req(method=r'"\ud800"'), -32700),
    ("method with NUL", lambda: _req(method=r'"he\u0000alth"'), -32601),
    ("method number", lambda: _req(method="5"), -32600),
    ("method empty", lambda: _req(method='""'), -32600),
    ("method 10000 chars", lambda: _req(method='"' + "m" * 10_000 + '"'), -32600),
    ("method null", lambda: _req(method="null"), -32600),
    ("params lone surrogate", lambda: _req(params=r'{"x":"\ud800"}'), -32700),
    ("params string", lambda: _req(params='"str"'), -32600),
    ("params null", lambda: _req(params="null"), -32600),
    ("params positional", lambda: _req(params="[1,2]"), -32602),
    ("params unknown key", lambda: _req(params='{"x":1}'), -32602),
    ("run_id number", lambda: _req(method='"runs.get"', params='{"run_id":5}'), -32602),
    ("run_id NUL", lambda: _req(method='"runs.get"', params='{"run_id":"\\u0000"}'), 1002),
    (
        "run_id 1000 chars",
        lambda: _req(method='"runs.get"', params='{"run_id":"' + "r" * 1000 + '"}'),
        -32602,
    ),
    ("runs.list bad enum", lambda: _req(method='"runs.list"', params='{"status":["x"]}'), -32602),
    ("runs.list limit huge", lambda: _req(method='"runs.list"', params='{"limit":1e308}'), -32602),
    (
        "runs.list status string",
        lambda: _req(method='"runs.list"', params='{"status":"running"}'),
        -32602,
    ),
    (
        "submit plan not a string",
        lambda: _req(method='"submit"', params='{"plan_text":[1]}'),
        -32602,
    ),
    ("submit garbage plan", lambda: _req(method='"submit"', params='{"plan_text":"[[[["}'), 1001),
    ("cancel unknown run", lambda: _req(method='"runs.cancel"', params='{"run_id":"x"}'), 1002),
    ("jsonrpc 1.0", lambda: b'{"jsonrpc":"1.0","id":1,"method":"health"}', -32600),
    ("no jsonrpc", lambda: b'{"id":1,"method":"health"}', -32600),
    ("extra member", lambda: _health(',"x":1'), -32600),
    ("empty object", lambda: b"{}", -32600),
    ("bare string", lambda: b'"health"', -32600),
    ("bare null", lambda: b"null", -32600),
    ("bare number", lambda: b"1" * 5000, -32700),
    ("invalid UTF-8", lambda: b"\xff\xfe\xfd", -32700),
    ("invalid UTF-8 in a string", lambda: b'{"jsonrpc":"2.0","id":1,"method":"h\xc3"}', -32700),
    ("NUL bytes", lambda: b"\x00" * 100, -32700),
    ("trailing NUL", lambda: _health() + b"\x00", -32700),
    ("two documents on a line", lambda: _health() + _health(), -32700),
    ("carriage return", lambda: _health() + b"\r", "result"),
    ("whitespace only", lambda: b" \t\r ", None),
    ("notification of a bug-prone call", lambda: _note("runs.get", '{"run_id":5}'), None),
    ("subscribe as notification", lambda: _note("events.subscribe", '{"run_id":"x"}'), None),
    ("empty batch", lambda: b"[]", -32600),
    ("batch of numbers", lambda: b"[1,2,3]", [-32600] * 3),
    ("batch of 10000", lambda: _batch(10_000), -32600),
    ("batch of 1000", lambda: _batch(1000), ["result"] * 1000),
    ("batch with bad ids", lambda: b"[" + _req("true") + b"," + _req() + b"]", [-32600, "result"]),
    ("batch nested in batch", lambda: b"[[" + _req() + b"]]", [-32600]),
    ("2 MiB of garbage", lambda: b"x" * (2 << 20), -32700),
    # Exactly the limit and no newline: the daemon reads it all, answers, and closes (more
    # unread bytes would make the kernel reset the connection and drop the answer).
    ("32 MiB and no newline", lambda: b"x" * (32 << 20), CLOSED),
]


def _outcome(answer: Any) -> Any:
    if isinstance(answer, list):
        return [_outcome(a) for a in answer]
    return answer["error"]["code"] if "error" in answer else "result"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, str]]:
    """A daemon whose one run holds a step running until the module ends."""
    tmp = tmp_path_factory.mktemp("hostile")
    started, go = tmp / "started", tmp / "go"
    plan = tmp / "plan.yaml"
    plan.write_text(PLAN.format(started=started, go=go))
    process = DaemonProcess(tmp, ORCH_IDLE_TIMEOUT_S="30").start()
    try:
        submitted = process.cli("submit", str(plan))
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.strip()
        deadline = time.monotonic() + 60
        while not started.exists():  # the step's own mark: it is running
            assert time.monotonic() < deadline, process.log_text()
            time.sleep(0.05)
        yield process, run_id
        go.touch()
        assert process.wait_for(run_id, {"succeeded", "failed"})["status"] == "succeeded"
        assert "rpc_connection_crashed" not in process.log_text()
    finally:
        process.close()


def _send_and_see_closed(path: Path, payload: bytes) -> list[Any]:
    """Send bytes past the line limit; return what came back before the daemon closed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


@pytest.mark.parametrize(
    ("make", "expected"), [pytest.param(make, exp, id=name) for name, make, exp in HOSTILE]
)
def test_hostile_line_gets_its_answer_and_the_daemon_goes_on(
    live: tuple[DaemonProcess, str], make: Callable[[], bytes], expected: Any
) -> None:
    daemon, run_id = live
    line = make()
    if expected == CLOSED:
        answers = _send_and_see_closed(daemon.socket, line)
        assert [a["error"]["code"] for a in answers] == [1004]
        assert answers[0]["error"]["data"]["max_line_bytes"] == 32 << 20
    else:
        answers = exchange(daemon.socket, line)  # also asserts health on this connection
        assert [_outcome(a) for a in answers] == ([] if expected is None else [expected])
    assert daemon.call("health")["status"] == "ok"
    run = daemon.call("runs.get", {"run_id": run_id})
    assert run["status"] == "running" and run["streams"][0]["steps"][0]["status"] == "running"
    assert daemon.proc is not None and daemon.proc.poll() is None


# --- in-process: random bytes at the decoder and dispatcher ---------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=30,
)
_requestish = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | _json,
        "method": st.sampled_from(["health", "runs.get", "events.subscribe", "boom"]) | _json,
        "params": _json,
        "id": _json,
    },
)

_wellformed = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0"),
        "method": st.sampled_from(["health", "runs.get", "events.subscribe", "boom"]),
    },
    optional={
        "params": st.dictionaries(st.text(max_size=6), _json, max_size=3) | _json,
        "id": st.none() | st.integers() | st.floats() | st.text(max_size=8) | _json,
    },
)


def _encoded(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


_lines = st.one_of(
    st.binary(max_size=200),
    _json.map(_encoded),
    _requestish.map(_encoded),
    _wellformed.map(_encoded),
    st.lists(_requestish | _wellformed, max_size=5).map(_encoded),
    st.tuples(_requestish.map(_encoded), st.binary(max_size=4), st.integers(0, 300)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]  # a request with bytes spliced in
    ),
)


async def _call(method: str, params: dict[str, Any]) -> Any:
    if method == "boom":
        raise {0: ValueError("bug"), 1: StoreUnavailable("db", "down"), 2: RpcError(7, "x")}[
            len(params) % 3
        ]
    return {"method": method, "params": params}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines)
def test_random_lines_get_an_answer_or_none_never_an_exception(line: bytes) -> None:
    answer = anyio.run(answer_line, line, _call)
    if answer is None:
        return
    decoded = orjson.loads(answer)
    for message in decoded if isinstance(decoded, list) else [decoded]:
        assert message["jsonrpc"] == "2.0" and "id" in message
        assert ("result" in message) != ("error" in message)
