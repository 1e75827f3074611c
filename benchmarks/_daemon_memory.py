"""Phase 4 of ``benchmarks/daemon.py``: submissions one after another, as a user makes them.

``orchestrator submit --wait examples/phase2.yaml`` (a real CLI process) ``submissions``
times in a row, each after the previous one exited. After each: the daemon's RSS
(``/proc/PID/status`` VmRSS, so what the kernel holds for it, native memory included), and
how long after its ``run_finished`` event (its ``ts``) the ``submit --wait`` process had
exited. Floor of the latter: when a raw socket watcher (``events.subscribe`` in a thread of
this process, nothing to import or tear down) received the same event.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._daemon_client import ROOT, DaemonUnderTest, Watcher, epoch, summary

__all__ = ["render_submissions", "run_submissions"]

EXAMPLE = ROOT / "examples" / "phase2.yaml"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def run_submissions(daemon: DaemonUnderTest, submissions: int) -> dict[str, Any]:
    """Submit the example ``submissions`` times with ``--wait``; RSS and exit lag of each."""
    rss = [rss_mib(daemon.pid)]
    lags: list[float] = []
    watcher_lags: list[float] = []
    for _ in range(submissions):
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "submit", "--wait", str(EXAMPLE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=daemon.env,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        run_id = proc.stdout.readline().decode().strip()
        watcher = Watcher(daemon.socket, run_id)
        _, err = proc.communicate(timeout=300)
        exited = time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"submit --wait exited {proc.returncode}: {err[-2000:]!r}")
        if not watcher.wait_done(60):
            raise RuntimeError(f"the watcher of {run_id} did not see its end")
        finished = [(t, e) for t, e in watcher.events() if e["event"] == "run_finished"]
        arrived, event = finished[-1]
        lags.append(exited - epoch(event["ts"]))
        watcher_lags.append(arrived - epoch(event["ts"]))
        rss.append(rss_mib(daemon.pid))
    return {
        "submissions": submissions,
        "rss_mib": [round(r, 1) for r in rss],
        "rss_growth_after_first": round(rss[-1] / rss[1] - 1, 3),
        "submit_wait_exit_after_run_finished": summary(lags),
        "watcher_after_run_finished": summary(watcher_lags),
    }


def render_submissions(report: dict[str, Any], kinds: Sequence[str]) -> str:
    """One line per store: phase 4, and ``runs.get`` of the running run (phase 1)."""
    lines = []
    for kind in kinds:
        subs, steady = report[kind]["submissions"], report[kind]["steady"]
        get = steady["loaded"]["runs.get"]
        lines.append(
            f"{kind}: RSS {subs['rss_mib'][1]} -> {subs['rss_mib'][-1]} MiB over "
            f"{subs['submissions']} submissions (+{subs['rss_growth_after_first']:.0%}); "
            f"submit --wait exits {subs['submit_wait_exit_after_run_finished']['median_ms']} ms "
            f"after run_finished (watcher: {subs['watcher_after_run_finished']['median_ms']} ms); "
            f"runs.get of the running {steady['steps']}-step run: p99 {get['p99_ms']} ms"
        )
    return "\n".join(lines)
