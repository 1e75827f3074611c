"""The dashboard over HTTP against a real daemon subprocess started with --http."""

from __future__ import annotations

import http.client
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.daemon_process import ROOT, DaemonProcess
from tests.orchestrator.test_daemon import write_plan


class _Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read().decode()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> _Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        return _Reply(conn.getresponse())
    finally:
        conn.close()


def test_token_file_bearer_cookie_and_401(web: tuple[DaemonProcess, int, str]) -> None:
    process, port, token = web
    assert stat.S_IMODE((process.state / "http-token").stat().st_mode) == 0o600
    assert len(token) >= 43
    assert _get(port, "/").status == 401
    assert _get(port, "/", {"Authorization": "Bearer wrong"}).status == 401
    assert _get(port, "/", {"Authorization": f"Bearer {token}"}).status == 200
    redirect = _get(port, f"/?status=running&token={token}")
    assert redirect.status == 303
    assert redirect.headers.get("location") == "/?status=running"
    cookie = redirect.headers.get("set-cookie", "")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    name_value = cookie.split(";")[0]
    assert _get(port, "/", {"Cookie": name_value}).status == 200
    assert token not in process.log_text()


def test_live_run_list_page_and_sse(web: tuple[DaemonProcess, int, str], tmp_path: Path) -> None:
    process, port, token = web
    auth = {"Authorization": f"Bearer {token}"}
    plan, _, go = write_plan(tmp_path)
    run_id = process.cli("submit", str(plan)).stdout.strip()
    listing = _get(port, "/", auth).body
    assert run_id in listing and "daemon-test" in listing
    api = json.loads(_get(port, "/api/runs", auth).body)
    assert [r["run_id"] for r in api["runs"]] == [run_id]

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/runs/{run_id}/events", headers=auth)
    stream = conn.getresponse()
    assert (stream.getheader("content-type") or "").startswith("text/event-stream")
    seen: list[dict[str, Any]] = []
    finished = False
    while not finished:
        line = stream.readline().decode()
        assert line, "the event stream ended before run_finished"
        if line.startswith("data: "):
            event = json.loads(line[6:])
            if event:
                seen.append(event)
            if event.get("event") == "step_started" and event.get("step") == "hold":
                locks = _get(port, "/locks", auth).body
                assert "redis" in locks and "worker" in locks and "<script" not in locks
                go.touch()  # the rest of the run happens while we listen
        finished = line.startswith("event: run_finished")
    conn.close()
    steps = [e["step"] for e in seen if e["event"] == "step_finished"]
    assert set(steps) == {"first", "hold", "last", "quick"}
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(set(seqs))

    page = _get(port, f"/runs/{run_id}", auth).body
    assert page.count('<g class="lane"') == 2
    assert page.count('class="bar status-succeeded') == 4
    assert "EventSource" not in page  # a finished run's page has nothing left to follow


def test_a_non_loopback_address_is_refused_with_the_fix(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "daemon", "--http", "0.0.0.0:8765"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"ORCH_STATE_DIR": str(tmp_path), "ORCH_SOCKET": str(tmp_path / "s"), "PATH": ""},
        timeout=60,
    )
    assert done.returncode != 0
    assert "--http-allow-remote" in done.stderr and "Traceback" not in done.stderr
