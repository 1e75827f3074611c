"""The run page's live parts (``/runs/{id}/live``): patches rendered from a real daemon's
events, with "held by", "rolling back", rollback bars and the critical path."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

from tests.daemon_process import DaemonProcess
from tests.orchestrator.web.test_http import _get
from tests.orchestrator.web.test_metrics import PLAN


def _patches(port: int, path: str, token: str) -> Iterator[dict[str, str] | None]:
    """Each ``patch`` event's parts, then None for ``done``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    stream = conn.getresponse()
    assert (stream.getheader("content-type") or "").startswith("text/event-stream")
    name = ""
    try:
        while True:
            line = stream.readline().decode()
            assert line, "the stream ended without 'done'"
            if line.startswith("event: "):
                name = line[7:].strip()
            elif line.startswith("data: ") and name == "patch":
                yield json.loads(line[6:])
            elif line.startswith("data: ") and name == "done":
                yield None
                return
    finally:
        conn.close()


def test_live_parts_follow_holders_rollback_and_end(
    web: tuple[DaemonProcess, int, str], tmp_path: Path
) -> None:
    process, port, token = web
    held, go = tmp_path / "held", tmp_path / "go"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(held=held, go=go))
    run_id = process.cli("submit", str(plan)).stdout.strip()
    page = _get(port, f"/runs/{run_id}", {"Authorization": f"Bearer {token}"}).body
    assert "EventSource" in page and "location.reload" not in page
    assert all(f'id="{part}"' in page for part in ("summary", "streams", "timeline", "steps"))

    last: dict[str, str] | None = None
    touched = False
    for parts in _patches(port, f"/runs/{run_id}/live", token):
        if parts is None:
            break
        last = parts
        rows = {
            row.split('data-stream="')[1].split('"')[0]: row
            for row in parts["streams"].split("<tr")[2:]
        }
        # `want` waits for redis, which `gated/hold` holds; `broken` rolls back meanwhile.
        if (
            not touched
            and "gated/hold" in rows.get("waiter", "")
            and "rolling back" in rows.get("broken", "")
        ):
            assert 'class="rollback-span"' in parts["timeline"]
            assert 'class="bar status-running' in parts["timeline"]
            assert "want (attempt 1) waiting; held by gated/hold" in parts["timeline"]
            go.touch()
            touched = True
    assert touched, "never saw the waiter held by gated/hold while broken rolled back"
    assert last is not None
    assert _get(port, f"/runs/{run_id}/live", {"Authorization": "Bearer no"}).status == 401
    assert last["summary"].startswith("failed") and "3/4 steps done" in last["summary"]
    assert "status-running" not in last["timeline"]
    assert "phase-rollback" in last["timeline"] and "rollback completed" in last["streams"]
    assert "held by" in last["streams"] and "gated/hold" not in last["streams"]
    # The run's length is set by a step that waited for the go file (or one waiting on it).
    assert last["critical"].startswith("Critical path: ")
    assert any(f"{s} (" in last["critical"] for s in ("hold", "want", "undo-it"))
    assert last["timeline"].count("critical-mark") >= 1
    assert "passed at 100%" in last["streams"]  # gated's gate


def test_locks_page_shows_holders_fences_queues_and_slots(
    web: tuple[DaemonProcess, int, str], tmp_path: Path
) -> None:
    process, port, token = web
    auth = {"Authorization": f"Bearer {token}"}
    held, go = tmp_path / "held", tmp_path / "go"
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.format(held=held, go=go))
    run_id = process.cli("submit", str(plan)).stdout.strip()
    deadline = time.monotonic() + 30
    while True:  # until `want` is queued behind `hold` for redis
        page = _get(port, "/locks", auth).body
        rows = {r.split("</td>")[0]: r for r in page.split('<tr class="resource"><td>')[1:]}
        if held.exists() and "waiter/want" in rows.get("redis", ""):
            break
        assert time.monotonic() < deadline, page
        time.sleep(0.05)
    redis = rows["redis"]
    fence = json.loads(process.cli("locks", "--json").stdout)["resources"][0]["fence"]
    assert "gated/hold (worker" in redis and f"<td>{fence}</td>" in redis
    assert "<ol><li>waiter/want (helper" in redis
    assert '<tr class="class"><td>cpu</td><td>1</td><td>1</td>' in page
    assert '<tr class="class"><td>light</td>' in page and "unlimited" in page
    assert '<tr class="agent"><td>worker</td><td>' + run_id in page
    assert "<script" not in page
    go.touch()
    assert process.cli("watch", run_id).returncode == 1  # `broken` fails, by design
