"""Reporting for ``benchmarks/daemon.py``: the daemon's store calls, the py-spy profile, machine
facts and the table."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks._daemon_client import summary

__all__ = [
    "append_costs",
    "machine",
    "profile_summary",
    "py_spy",
    "read_costs",
    "render",
    "sampled",
    "store_py_reference",
]

RESULTS = Path(__file__).resolve().parent / "results"
STORES = ("sqlite", "postgresql")


# -- the daemon's own store calls ----------------------------------------------------------------


def append_costs(records: Sequence[Sequence[Any]], run_ids: set[str]) -> dict[str, Any]:
    """The daemon's ``append_events`` calls for ``run_ids``: batches and their cost."""
    calls = [r for r in records if r[0] == "append_events" and r[5] in run_ids]
    if not calls:
        return {"calls": 0}
    events, steps, total = (
        sum(r[3] for r in calls),
        sum(r[4] for r in calls),
        sum(r[2] for r in calls),
    )
    return {
        "calls": len(calls),
        "events": events,
        "step_events": steps,
        "events_per_call": round(events / len(calls), 1),
        "max_events_per_call": max(r[3] for r in calls),
        "per_call": summary([r[2] for r in calls]),
        "total_s": round(total, 3),
        "us_per_step_event": round(total / max(steps, 1) * 1e6, 1),
        "us_per_event": round(total / events * 1e6, 1),
    }


def read_costs(records: Sequence[Sequence[Any]], window: Sequence[float]) -> dict[str, Any]:
    """Median time of each store read the daemon made during ``window``."""
    by: dict[str, list[float]] = {}
    for r in records:
        if r[0] != "append_events" and window[0] <= r[1] <= window[1]:
            by.setdefault(r[0], []).append(r[2])
    return {name: summary(s) for name, s in sorted(by.items())}


# -- profile -------------------------------------------------------------------------------------


def py_spy() -> str | None:
    """The py-spy binary (the venv's first), or None."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampled(pid: int, out: Path | None) -> Iterator[None]:
    """py-spy (nonblocking, 200 Hz, raw collapsed stacks) on ``pid`` while inside."""
    spy = py_spy()
    if out is None or spy is None:
        yield
        return
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "200", "--format", "raw",
         "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)  # attached
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def profile_summary(raw: Path, top: int = 25) -> tuple[dict[str, Any], str]:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples (200 Hz, the daemon's busy threads)", "", "own:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top * 2)]
    data = {
        "samples": total,
        "own": {f: round(n / total, 4) for f, n in own.most_common(top)},
        "inclusive": {f: round(n / total, 4) for f, n in inclusive.most_common(top * 2)},
    }
    return data, "\n".join(lines)


# -- report --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    mem_kib = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal:")
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {p: metadata.version(p) for p in ("anyio", "asyncpg", "orjson", "pydantic")},
    }


def _lat(f: dict[str, Any]) -> str:
    if not f.get("n"):
        return "no samples"
    return f"{f['median_ms']:.1f} / {f['p90_ms']:.1f} / {f['p99_ms']:.1f} / {f['max_ms']:.1f}"


def _floor(f: dict[str, Any]) -> str:
    return f"{f['median_ms']:.1f} / {f['p99_ms']:.1f}"


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> str:
    if not a.get("median_ms") or not b.get("median_ms"):
        return ""
    return f"{a['median_ms'] / b['median_ms']:.1f}x"


Row = tuple[str, str, str, str, str, str]
HEADER: Row = (
    "figure",
    "median / p90 / p99 / max ms",
    "floor: median / p99 ms",
    "ratio",
    "daemon CPU; run-queue",
    "size",
)


def _cpu(f: dict[str, Any]) -> str:
    if not f.get("n") or "daemon_cpu_ms" not in f:
        return ""
    return f"{f['daemon_cpu_ms']:.1f} ms/call; {f['daemon_runq_share']:.0%}"


def _call_rows(r: dict[str, Any], n: int, lanes: int) -> list[Row]:
    idle, after = r["idle"], r["after"]
    rows: list[Row] = []
    for label, loaded in (
        (f"{n} running", r["steady"]["loaded"]),
        (f"churn, ~{lanes} running", r["churn"]["loaded"]),
    ):
        for method in ("runs.get", "runs.list", "agents.list"):
            floor, floor_label = idle[method], "idle"
            if method == "runs.get":
                floor, floor_label = after["runs.get"], "ended"
            rows.append(
                (
                    f"{method}, {label}",
                    _lat(loaded[method]),
                    f"{_floor(floor)} ({floor_label})",
                    _ratio(loaded[method], floor),
                    # Under churn the daemon's CPU during a call is mostly its other work.
                    "busy" if label.startswith("churn") else _cpu(loaded[method]),
                    f"{loaded[method].get('bytes', 0) / 1024:.0f} KiB",
                )
            )
    for label, f in (
        ("runs.get, idle, one-step run", idle["runs.get"]),
        (f"runs.get, the {n}-step run ended", after["runs.get"]),
        ("runs.list, idle", idle["runs.list"]),
        ("agents.list, idle (no active run)", idle["agents.list"]),
    ):
        rows.append((label, _lat(f), "", "", _cpu(f), f"{f['bytes'] / 1024:.1f} KiB"))
    return rows


def _first_step_rows(r: dict[str, Any]) -> list[Row]:
    f = r["first_step"]
    rows: list[Row] = [
        (
            "submit -> first step_started at watcher",
            _lat(f["total"]),
            f"{_floor(r['first_step_floor'])} (in-process)",
            _ratio(f["total"], r["first_step_floor"]),
            "",
            f"{f['total']['n']} one-step runs",
        )
    ]
    for key, label in (
        ("submit_rpc", "of which: submit answered (run stored)"),
        ("to_run_started", "          submit sent -> run_started ts"),
        ("scheduler", "          run_started -> step_started ts"),
        ("to_watcher", "          step_started ts -> watcher"),
    ):
        floor = r["first_step_floor"] if key == "scheduler" else None
        rows.append(
            (
                label,
                _lat(f[key]),
                f"{_floor(floor)} (in-process)" if floor else "",
                _ratio(f[key], floor) if floor else "",
                "",
                "",
            )
        )
    return rows


def _load_rows(r: dict[str, Any], n: int) -> list[Row]:
    s, c = r["steady"], r["churn"]
    return [
        (
            f"submit the {n}-step plan ({s['plan_bytes'] / 1024:.0f} KiB)",
            f"{s['submit_ms']:.0f}",
            f"{s['parse_in_process_ms']:.0f} (parse in-process)",
            "",
            "",
            "",
        ),
        (
            f"submit -> all {n} running",
            f"{s['submit_to_all_running_s'] * 1e3:.0f}",
            "",
            "",
            f"{s['ramp_daemon_cpu_s']:.2f} s; {s['ramp_daemon_runq_s']:.2f} s (after submit)",
            "",
        ),
        (
            f"cancel the {n} running steps",
            f"{s['cancel_s'] * 1e3:.0f}",
            "",
            "",
            "",
            "",
        ),
        (
            f"submit the {c['steps']}-step churn plan ({c['plan_bytes'] / 1024:.0f} KiB)",
            f"{c['submit_ms']:.0f}",
            f"{c['parse_in_process_ms']:.0f} (parse in-process)",
            "",
            "",
            "",
        ),
        (
            "  health meanwhile (event loop blocked?)",
            _lat(c["health_during_submit"]),
            f"{_floor(r['idle']['health'])} (idle)" if "health" in r["idle"] else "",
            "",
            "",
            f"{c['health_during_submit']['n']} calls",
        ),
        *[
            (
                f"churn, {label}: {w['step_events_per_s']:.0f} step events/s",
                f"{w['seconds']:.1f} s",
                "",
                "",
                f"{w['daemon_cpu_share']:.0%} of a core; {w['daemon_runq_share']:.0%}",
                "",
            )
            for label, w in (("watcher only", c["quiet"]), ("status calls", c["calls"]))
        ],
        (
            f"churn run: {c['steps']} steps of {c['step_s'][0]:g}-{c['step_s'][1]:g} s, "
            f"{c['failed_steps']} failed",
            f"{c['run_s']:.1f} s",
            "",
            "",
            f"{c['daemon_cpu_us_per_step']:.0f} us CPU/step",
            f"running {c['running_seen']['min']}-{c['running_seen']['max']}",
        ),
    ]


def _store_rows(r: dict[str, Any], n: int) -> list[Row]:
    s, c = r["steady"], r["churn"]
    to_watcher = r["first_step"]["to_watcher"]
    rows: list[Row] = [
        (
            "event ts -> watcher: one-step runs",
            _lat(to_watcher),
            "",
            "",
            "",
            f"{to_watcher['n']} step_started",
        )
    ]
    rows += [
        (label, _lat(p), "", "", "", f"{p['events']} events")
        for label, p in (
            (f"event ts -> watcher: {n} starting", s["pipeline_burst"]),
            (f"event ts -> watcher: cancelling {n}", s["pipeline_cancel"]),
            ("event ts -> watcher: churn, watcher only", c["quiet"]["pipeline"]),
            ("event ts -> watcher: churn, status calls", c["calls"]["pipeline"]),
        )
    ]
    for key, label in (
        ("one_step_runs", "append_events: one-step runs"),
        ("burst_starting", f"append_events: {n} starting"),
        ("cancel", f"append_events: cancelling {n}"),
        ("churn", "append_events: churn"),
    ):
        a = r["store_calls"][key]
        if not a["calls"]:
            continue
        rows.append(
            (
                label,
                _lat(a["per_call"]) + " per call",
                "",
                "",
                f"{a['us_per_step_event']:.0f} us/step event",
                f"{a['events_per_call']:.1f} events/call, max {a['max_events_per_call']}",
            )
        )
    return rows


def render(report: dict[str, Any]) -> str:
    """Per store, the figures as a plain-text table; then the references."""
    sizes = report["meta"]["sizes"]
    n, lanes = sizes["streams"] * sizes["steps_per_stream"], sizes["lanes"]
    out: list[str] = []
    for kind in STORES:
        if kind not in report:
            continue
        r = report[kind]
        rows = [
            HEADER,
            *_call_rows(r, n, lanes),
            *_first_step_rows(r),
            *_load_rows(r, n),
            *_store_rows(r, n),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        table = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        table.insert(1, "  ".join("-" * w for w in widths))
        out += [f"== {kind}: {r['store']}; daemon up in {r['daemon_start_s']:.2f} s", *table, ""]
    ref = report.get("store_py_reference")
    if ref:
        out.append(f"benchmarks/store.py, {ref['source']}: median us per append call")
        out += [
            f"  {name:<18} batch 1 {v['batch_1']:>8.1f}   batch 4 {v['batch_4']:>8.1f}"
            for name, v in ref["median_us_per_call"].items()
        ]
    out.append(
        f"1-min load average before/after each store: {report['meta']['load_avg_1min']} "
        f"on {report['meta']['nproc']} CPUs; run-queue: share of the time the daemon waited "
        "for a CPU (other load)"
    )
    return "\n".join(out)


def store_py_reference() -> dict[str, Any] | None:
    path = RESULTS / "store.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return {
        "source": f"results/store.json of {data['meta'].get('date', '?')}",
        "median_us_per_call": {
            name: {b: figures[b]["median_us"] for b in ("batch_1", "batch_4")}
            for name, figures in data.items()
            if name != "meta"
        },
    }
