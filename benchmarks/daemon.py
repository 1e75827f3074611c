"""Daemon benchmarks: what a user of ``orchestrator daemon`` waits for, each next to its floor.

A real daemon subprocess (``benchmarks/_daemon_child.py``: ``orchestrator daemon`` with its
run-store calls timed) on a private socket and state directory, once per store: SQLite (the
default file, WAL) and PostgreSQL (one started here with fsync on, as ``benchmarks/store.py``
does). Clients connect afresh for every call, as the CLI does. Besides latency, every call
records the daemon's CPU time and run-queue wait (``/proc/PID/task/*/schedstat``), so a
figure inflated by other load on the machine says so.

1. status     ``runs.get`` (``orchestrator status RUN``), ``runs.list`` (``status``) and
              ``agents.list`` (``agents``), called in rotation, while 1,000 steps run at once
              (10 streams x 100 ``sleep`` steps, ``needs: []``, an unlimited class; cancelled
              once measured), and under churn: 1,000 lanes of 3 steps of 3-6 s, so about
              1,000 run while ~220 a second finish and start. Floors, in the same daemon: the
              same calls idle (``runs.get`` of a one-step run), and ``runs.get`` of the same
              1,000-step run once it ended (same answer size, no live view). Also ``health``
              while the 3,000-step churn plan is being submitted (is the event loop blocked?).
2. first step from sending ``submit`` to the first ``step_started`` a watcher receives
              (``events.subscribe`` from the start, as ``submit --wait`` does), for a
              one-step plan; split by the events' own ``ts``; floor: the same plan's scheduler
              in this process, ``run_started`` to ``step_started``.
3. store      pipeline latency, each event's ``ts`` to its arrival at a watcher (the daemon
              stores an event before anyone hears of it): single steps, a burst (1,000 steps
              starting, then cancelled) and churn (watcher only, then with status calls); and
              the daemon's own ``append_events`` calls: batch sizes and time per call and per
              step event, as it pays them (waits for the store's turn and the event loop
              included). Reference: ``benchmarks/store.py``'s figures (``results/store.json``).
4. submissions ``orchestrator submit --wait examples/phase2.yaml`` 20 times in a row: the
              daemon's RSS after each, and how long after ``run_finished`` each CLI process
              had exited (``benchmarks/_daemon_memory.py``).

``--profile`` samples the daemon with py-spy (``pip install py-spy``) in four phases (ramp,
steady calls, churn quiet, churn calls) and writes the top functions to
``results/daemon-profile.txt``.

Usage::

    .venv/bin/python benchmarks/daemon.py                   # both stores, 2 to 3 minutes
    .venv/bin/python benchmarks/daemon.py --quick           # smoke version, < 30 s
    .venv/bin/python benchmarks/daemon.py --store sqlite    # or postgresql, or both
    .venv/bin/python benchmarks/daemon.py --profile         # + py-spy of the daemon

Prints a table and writes JSON to ``benchmarks/results/daemon.json`` (``--quick``:
``daemon-quick.json``; ``--profile``: ``daemon-profiled.json`` and ``daemon-profile.txt``, as
the sampler perturbs the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio
import yaml

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.actions import builtin_registry
from benchmarks._daemon_client import DaemonUnderTest, Watcher, epoch, summary
from benchmarks._daemon_memory import render_submissions, run_submissions
from benchmarks._daemon_report import (
    RESULTS,
    STORES,
    append_costs,
    machine,
    profile_summary,
    py_spy,
    read_costs,
    render,
    sampled,
    store_py_reference,
)
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.scheduler import Scheduler, SchedulerConfig
from streams.loader import load_plan_text


@dataclass(frozen=True, slots=True)
class Sizes:
    streams: int  # of the steady plan
    steps_per_stream: int
    calls: int  # per method per phase
    submits: int  # one-step plans for the first-step latency
    lanes: int  # concurrent chains of the churn plan
    depth: int  # steps per lane
    quiet_s: float  # churn with the watcher only, before the status calls
    step_s: tuple[float, float]  # shortest and longest churn step, spread evenly
    submissions: int  # of the example, one after another (phase 4)

    @property
    def concurrent(self) -> int:
        return self.streams * self.steps_per_stream


FULL = Sizes(
    streams=10,
    steps_per_stream=100,
    calls=150,
    submits=10,
    lanes=1000,
    depth=3,
    quiet_s=2.0,
    step_s=(3.0, 6.0),
    submissions=20,
)
QUICK = Sizes(
    streams=4,
    steps_per_stream=50,
    calls=15,
    submits=3,
    lanes=200,
    depth=2,
    quiet_s=0.5,
    step_s=(1.0, 2.0),
    submissions=3,
)

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

#: A steady step sleeps this long; the run is cancelled as soon as it has been measured.
STEADY_SLEEP_S = 600


# -- plans ---------------------------------------------------------------------------------------


def _plan(name: str, streams: list[dict[str, Any]]) -> str:
    """The plan as YAML, the form users write (and the loader's faster one)."""
    return yaml.dump(
        {
            "version": 1,
            "plan": name,
            "caps": {"light": None},
            "agents": {"worker": {"class": "light", "can": ["sleep"]}},
            "streams": streams,
        },
        Dumper=_DUMPER,
        sort_keys=False,
    )


def _step(step_id: str, seconds: float, needs: list[str]) -> dict[str, Any]:
    return {
        "id": step_id,
        "agent": "worker",
        "action": "sleep",
        "with": {"seconds": seconds},
        "needs": needs,
    }


def steady_plan(sizes: Sizes) -> str:
    """``streams`` x ``steps_per_stream`` independent long sleeps: all run at once."""
    return _plan(
        "daemon-bench-steady",
        [
            {
                "id": f"s{s:02d}",
                "team": ["worker"],
                "steps": [
                    _step(f"t{i:03d}", STEADY_SLEEP_S, []) for i in range(sizes.steps_per_stream)
                ],
            }
            for s in range(sizes.streams)
        ],
    )


def churn_plan(sizes: Sizes) -> str:
    """``lanes`` chains of ``depth`` steps lasting ``step_s`` (spread evenly), in 10 streams:
    about ``lanes`` steps run at any time, and ``lanes / mean step`` start and finish each
    second."""
    low, high = sizes.step_s
    per_stream = sizes.lanes // 10
    streams = []
    for s in range(10):
        steps = []
        for lane in range(per_stream):
            for j in range(sizes.depth):
                seconds = low + (high - low) * ((lane * 37 + j * 53 + s * 11) % 100) / 100
                needs = [f"l{lane:03d}-{j - 1}"] if j else []
                steps.append(_step(f"l{lane:03d}-{j}", seconds, needs))
        streams.append({"id": f"s{s:02d}", "team": ["worker"], "steps": steps})
    return _plan("daemon-bench-churn", streams)


def one_step_plan() -> str:
    return _plan(
        "daemon-bench-one", [{"id": "s", "team": ["worker"], "steps": [_step("t", 0, [])]}]
    )


# -- measuring -----------------------------------------------------------------------------------

Call = tuple[str, dict[str, Any]]
PROFILED_PHASES = ("ramp", "steady", "churn-quiet", "churn-calls")


def measure(
    daemon: DaemonUnderTest,
    calls: Sequence[Call],
    rounds: int,
    keep_going: Callable[[], bool] = lambda: True,
) -> dict[str, Any]:
    """Call each of ``calls`` once per round, the order rotating, for ``rounds`` rounds (or
    until ``keep_going`` says no). Per method: latency, answer size, and the daemon's CPU
    and run-queue wait during each call; for the window: wall, CPU and wait seconds."""
    latency: dict[str, list[float]] = {method: [] for method, _ in calls}
    cpu: dict[str, list[float]] = {method: [] for method, _ in calls}
    waited: dict[str, list[float]] = {method: [] for method, _ in calls}
    sizes: dict[str, list[int]] = {method: [] for method, _ in calls}
    began, (cpu0, wait0) = time.time(), daemon.sched()
    for r in range(rounds):
        if not keep_going():
            break
        for method, params in [*calls[r % len(calls) :], *calls[: r % len(calls)]]:
            before = daemon.sched()
            _, seconds, size = daemon.call(method, params)
            after = daemon.sched()
            latency[method].append(seconds)
            cpu[method].append(after[0] - before[0])
            waited[method].append(after[1] - before[1])
            sizes[method].append(size)
    cpu1, wait1 = daemon.sched()
    out: dict[str, Any] = {}
    for method, samples in latency.items():
        if not samples:
            out[method] = {"n": 0}
            continue
        out[method] = {
            **summary(samples),
            "bytes": sorted(sizes[method])[len(samples) // 2],
            "daemon_cpu_ms": summary(cpu[method])["median_ms"],
            "daemon_runq_share": round(sum(waited[method]) / sum(samples), 3),
        }
    out["window"] = [began, time.time()]
    out["daemon_cpu_s"] = round(cpu1 - cpu0, 3)
    out["daemon_runq_s"] = round(wait1 - wait0, 3)
    return out


def pipeline_latency(
    received: Sequence[tuple[float, dict[str, Any]]], since: float, until: float
) -> dict[str, Any]:
    """Arrival minus ``ts`` of the events emitted in [since, until]."""
    lags = [t - epoch(e["ts"]) for t, e in received if since <= epoch(e["ts"]) <= until]
    return {"events": len(lags), **summary(lags)}


Profile = Callable[[str], contextlib.AbstractContextManager[None]]


def run_steady(daemon: DaemonUnderTest, sizes: Sizes, profile: Profile) -> dict[str, Any]:
    """Phase 1 under steady load, and the burst of phase 3: submit, wait until every step
    runs, measure, cancel."""
    n = sizes.concurrent
    text = steady_plan(sizes)
    with profile("ramp"):
        sent = time.time()
        result, submit_s, _ = daemon.call("submit", {"plan_text": text}, timeout_s=120)
        cpu, waited = daemon.sched()  # from the answer on: the plan's parse is not in it
        run_id = result["run_id"]
        watcher = Watcher(daemon.socket, run_id)
        ready = watcher.wait_started(n, timeout_s=120)
        if ready is None:
            raise RuntimeError(f"only {watcher.started} of {n} steps started within 120 s")
        ramp_cpu, ramp_waited = (a - b for a, b in zip(daemon.sched(), (cpu, waited), strict=True))
    calls: list[Call] = [
        ("runs.get", {"run_id": run_id}),
        ("runs.list", {}),
        ("agents.list", {}),
    ]
    with profile("steady"):
        loaded = measure(daemon, calls, sizes.calls)
    agents, _, _ = daemon.call("agents.list", {"run_id": run_id})
    running = sum(len(a["running"]) for a in agents["agents"])
    if running != n:
        raise RuntimeError(f"{running} of {n} steps still running after the measurement")
    began = time.perf_counter()
    daemon.call("runs.cancel", {"run_id": run_id}, timeout_s=120)
    cancel_s = time.perf_counter() - began
    watcher.wait_done(60)
    received = watcher.events()
    return {
        "run_id": run_id,
        "steps": n,
        "plan_bytes": len(text),
        "submit_ms": round(submit_s * 1e3, 1),
        "parse_in_process_ms": round(_parse_s(text) * 1e3, 1),
        "sent": sent,
        "ready": ready,
        "submit_to_all_running_s": round(ready - sent, 3),
        "ramp_daemon_cpu_s": round(ramp_cpu, 3),
        "ramp_daemon_runq_s": round(ramp_waited, 3),
        "loaded": loaded,
        "cancel_s": round(cancel_s, 3),
        "pipeline_burst": pipeline_latency(received, watcher.subscribed_at, ready),
        "pipeline_cancel": pipeline_latency(received, ready + 0.001, float("inf")),
    }


def submit_probed(daemon: DaemonUnderTest, text: str) -> tuple[str, float, dict[str, Any]]:
    """Submit ``text`` from a thread while this one calls ``health`` back to back; return
    the run id, the submit's seconds and the ``health`` latencies meanwhile."""
    box: dict[str, Any] = {}

    def submit() -> None:
        box["result"] = daemon.call("submit", {"plan_text": text}, timeout_s=120)

    thread = threading.Thread(target=submit, name="submit")
    thread.start()
    pings: list[float] = []
    while thread.is_alive():
        pings.append(daemon.call("health", timeout_s=120)[1])
    thread.join()
    result, submit_s, _ = box["result"]
    return result["run_id"], submit_s, summary(pings)


def _share(seconds: float, window: Sequence[float]) -> float:
    return round(seconds / max(window[1] - window[0], 1e-9), 3)


def run_churn(daemon: DaemonUnderTest, sizes: Sizes, profile: Profile) -> dict[str, Any]:
    """Phase 1 while ``lanes`` steps keep starting and finishing: first a quiet window (the
    watcher only), then one with status calls back to back."""
    text = churn_plan(sizes)
    sent = time.time()
    run_id, submit_s, health = submit_probed(daemon, text)
    cpu0 = daemon.sched()[0]
    watcher = Watcher(daemon.socket, run_id)
    # Measure once the first wave is half done: from then on steps start and finish alike.
    if watcher.wait_started(sizes.lanes + sizes.lanes // 2, timeout_s=120) is None:
        raise RuntimeError(f"only {watcher.started} churn steps started within 120 s")
    with profile("churn-quiet"):
        (cpu, waited), began = daemon.sched(), time.time()
        time.sleep(sizes.quiet_s)
        cpu, waited = (a - b for a, b in zip(daemon.sched(), (cpu, waited), strict=True))
        quiet: dict[str, Any] = {
            "window": [began, time.time()],
            "daemon_cpu_s": cpu,
            "daemon_runq_s": waited,
        }
    seen: list[int] = []

    def busy() -> bool:
        seen.append(watcher.running)
        return watcher.running >= 0.8 * sizes.lanes

    calls: list[Call] = [("runs.get", {"run_id": run_id}), ("runs.list", {}), ("agents.list", {})]
    with profile("churn-calls"):
        loaded = measure(daemon, calls, sizes.calls, busy)
    if not watcher.wait_done(180):
        raise RuntimeError("the churn run did not end within 180 s")
    cpu_run = daemon.sched()[0] - cpu0
    received = watcher.events()
    finished = [e for _, e in received if e["event"] == "step_finished"]
    out: dict[str, Any] = {
        "run_id": run_id,
        "steps": sizes.lanes * sizes.depth,
        "step_s": list(sizes.step_s),
        "plan_bytes": len(text),
        "submit_ms": round(submit_s * 1e3, 1),
        "parse_in_process_ms": round(_parse_s(text) * 1e3, 1),
        "health_during_submit": health,
        "run_s": round(epoch(received[-1][1]["ts"]) - sent, 3),
        "failed_steps": sum(e.get("status") != "succeeded" for e in finished),
        "running_seen": {"min": min(seen[:-1] or seen), "max": max(seen)},
        "daemon_cpu_us_per_step": round(cpu_run / (sizes.lanes * sizes.depth) * 1e6, 1),
        "loaded": loaded,
    }
    for name, window in (("quiet", quiet), ("calls", loaded)):
        since, until = window["window"]
        steps = sum(
            1
            for _, e in received
            if since <= epoch(e["ts"]) <= until and e["event"].startswith("step_")
        )
        out[name] = {
            "seconds": round(until - since, 3),
            "step_events_per_s": round(steps / max(until - since, 1e-9), 1),
            "daemon_cpu_share": _share(window["daemon_cpu_s"], window["window"]),
            "daemon_runq_share": _share(window["daemon_runq_s"], window["window"]),
            "pipeline": pipeline_latency(received, since, until),
        }
    return out


def run_first_steps(daemon: DaemonUnderTest, sizes: Sizes) -> dict[str, Any]:
    """Phase 2: submit a one-step plan, watch it from the start, time its first step."""
    text = one_step_plan()
    rows: list[dict[str, float]] = []
    run_ids: list[str] = []
    for _ in range(sizes.submits):
        sent = time.time()
        result, submit_s, _ = daemon.call("submit", {"plan_text": text})
        watcher = Watcher(daemon.socket, result["run_id"])
        arrived = watcher.wait_started(1, timeout_s=30)
        if arrived is None or not watcher.wait_done(30):
            raise RuntimeError(f"one-step run {result['run_id']} did not run")
        first = {e["event"]: e for _, e in reversed(watcher.events())}
        run_started, step_started = (
            epoch(first["run_started"]["ts"]),
            epoch(first["step_started"]["ts"]),
        )
        rows.append(
            {
                "total": arrived - sent,
                "submit_rpc": submit_s,
                "to_run_started": run_started - sent,
                "scheduler": step_started - run_started,
                "to_watcher": arrived - step_started,
            }
        )
        run_ids.append(result["run_id"])
    return {
        "run_ids": run_ids,
        **{key: summary([r[key] for r in rows]) for key in rows[0]},
    }


def _parse_s(text: str) -> float:
    registry = builtin_registry()
    began = time.perf_counter()
    load_plan_text(text, "<bench>", registry=registry)
    return time.perf_counter() - began


async def _in_process_first_step(runs: int, workdir: Path) -> list[float]:
    plan, _ = load_plan_text(one_step_plan(), "<bench>", registry=builtin_registry())
    lags: list[float] = []
    for _ in range(runs):
        sink = MemorySink()
        run_id = "bench-" + secrets.token_hex(4)
        scheduler = Scheduler(
            plan,
            run_id=run_id,
            coordinator=InProcessCoordinator(),
            registry=builtin_registry(),
            events=EventLog(run_id, [sink]),
            config=SchedulerConfig(workdir=workdir),
        )
        await scheduler.run()
        first = {e["event"]: e for e in reversed(sink.events)}
        lags.append(epoch(first["step_started"]["ts"]) - epoch(first["run_started"]["ts"]))
    return lags


# -- one store -----------------------------------------------------------------------------------


@contextlib.contextmanager
def store_url(kind: str) -> Iterator[tuple[str | None, str]]:
    """The ``ORCH_STORE`` value for ``kind`` and a description of it."""
    if kind == "sqlite":
        yield None, "SQLite, <state dir>/runs.sqlite3 (WAL; FULL sync for run start/end only)"
        return
    from tests.servers_postgres import PostgresServer, PostgresTemplate

    template = PostgresTemplate()
    server = PostgresServer(template, fsync=True)
    try:
        server.start()
        version = server.psql("SHOW server_version").strip().split()[0]
        yield server.dsn, f"PostgreSQL {version}, local, fsync=on, synchronous_commit=on"
    finally:
        server.remove()
        template.remove()


def bench_store(kind: str, sizes: Sizes, profile_dir: Path | None) -> dict[str, Any]:
    with store_url(kind) as (url, setup), tempfile.TemporaryDirectory(prefix="orch-dbench-") as tmp:
        daemon = DaemonUnderTest(Path(tmp), store=url)
        try:
            start_s = daemon.start()
            for _ in range(20):  # warm-up: imports, connections, caches
                daemon.call("health")
            first = run_first_steps(daemon, sizes)
            idle_calls: list[Call] = [
                ("runs.get", {"run_id": first["run_ids"][-1]}),
                ("runs.list", {}),
                ("agents.list", {}),
                ("health", {}),
            ]
            idle = measure(daemon, idle_calls, sizes.calls)
            submissions = run_submissions(daemon, sizes.submissions)

            def profile(phase: str) -> contextlib.AbstractContextManager[None]:
                raw = profile_dir / f"{kind}-{phase}.raw" if profile_dir else None
                return sampled(daemon.pid, raw)

            steady = run_steady(daemon, sizes, profile)
            after = measure(daemon, [("runs.get", {"run_id": steady["run_id"]})], sizes.calls)
            churn = run_churn(daemon, sizes, profile)
            records = daemon.stop()
        finally:
            daemon.kill()
    return {
        "store": setup,
        "daemon_start_s": round(start_s, 3),
        "first_step": first,
        "idle": idle,
        "submissions": submissions,
        "steady": steady,
        "after": after,
        "churn": churn,
        "store_calls": {
            "one_step_runs": append_costs(records, set(first["run_ids"])),
            "burst_starting": append_costs(
                [r for r in records if r[1] <= steady["ready"]], {steady["run_id"]}
            ),
            "cancel": append_costs(
                [r for r in records if r[1] > steady["ready"]], {steady["run_id"]}
            ),
            "churn": append_costs(records, {churn["run_id"]}),
            "reads_idle": read_costs(records, idle["window"]),
            "reads_steady": read_costs(records, steady["loaded"]["window"]),
            "reads_after": read_costs(records, after["window"]),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke version, under 30 s")
    parser.add_argument("--store", choices=(*STORES, "both"), default="both")
    parser.add_argument("--profile", action="store_true", help="py-spy the daemon (perturbs)")
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    if args.profile and py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    sizes = QUICK if args.quick else FULL
    kinds = STORES if args.store == "both" else (args.store,)
    name = "daemon" + ("-quick" if args.quick else "") + ("-profiled" if args.profile else "")
    output = args.output or RESULTS / f"{name}.json"
    report: dict[str, Any] = {
        "meta": {
            **machine(),
            "command": " ".join([".venv/bin/python", "benchmarks/daemon.py", *sys.argv[1:]]),
            "sizes": asdict(sizes),
            "profiled": args.profile,
        }
    }
    with tempfile.TemporaryDirectory(prefix="orch-dbench-prof-") as prof:
        with tempfile.TemporaryDirectory(prefix="orch-dbench-floor-") as tmp:
            floor = anyio.run(_in_process_first_step, max(sizes.submits, 5), Path(tmp))
        load: list[float] = [round(os.getloadavg()[0], 2)]
        profile_text: list[str] = []
        for kind in kinds:
            began = time.perf_counter()
            result = bench_store(kind, sizes, Path(prof) if args.profile else None)
            result["first_step_floor"] = summary(floor)
            report[kind] = result
            load.append(round(os.getloadavg()[0], 2))
            print(f"{kind}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
            if args.profile:
                for phase in PROFILED_PHASES:
                    raw = Path(prof) / f"{kind}-{phase}.raw"
                    if raw.exists():
                        data, text = profile_summary(raw)
                        result.setdefault("profile", {})[phase] = data
                        profile_text += [f"=== {kind}, {phase}", text, ""]
        report["meta"]["load_avg_1min"] = load
    report["store_py_reference"] = store_py_reference()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if profile_text:
        (RESULTS / "daemon-profile.txt").write_text("\n".join(profile_text), encoding="utf-8")
    print(render(report))
    print(render_submissions(report, kinds))
    print(f"\nresults: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
