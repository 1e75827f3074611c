"""Scheduler benchmarks, each figure measured in the same run as its floor or peer.

1. dispatch   10,000 no-op steps (``sleep 0``, ``needs: []``, 4 streams, caps 2/3/2/unlimited)
              through the real scheduler with a JsonlSink, a MemorySink, a sink that drops
              events and events switched off, against a bare anyio CapacityLimiter loop over
              the same tasks and caps; wall-clock, CPU and garbage-collection time per step.
2. makespan   a 30-step plan of ``sleep`` steps with locks, ``needs`` and ``depends_on``,
              against its lower bound max(critical path, class work / cap, lock work) and
              against the coordinator's policy simulated with zero overhead.
3. memory     tracemalloc peak and RSS growth for loading and running the 10,000-step plan,
              each in a fresh child process.
4. peer       4 streams x 50 independent 50 ms steps (the shape peers were measured with),
              against the ideal 1.25 s and a bare anyio loop; quoted peer figures are
              printed as references only.
5. validation ``load_plan`` of the 10,000-step plan as YAML and as JSON, and how much of it
              is pydantic and the cross-reference checks.

Every scheduler run is checked with :func:`orchestrator.verify.verify_events` (caps, locks,
fences, needs). Timed figures are medians over ``--repeats`` runs, interleaved with their
floors. CPU/wall of the CPU-bound runs is printed: below 0.9 other load shared the CPUs and
wall-clock figures are inflated. Usage::

    .venv/bin/python benchmarks/scheduler.py            # full, about 3 minutes
    .venv/bin/python benchmarks/scheduler.py --quick    # smoke version, ~15 s
    .venv/bin/python benchmarks/scheduler.py --only makespan,peer

Prints a table and writes JSON to ``benchmarks/results/scheduler.json`` (``--quick``:
``scheduler-quick.json``) and the profile of one dispatch run to ``scheduler-profile.txt``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
from pydantic import SecretStr

from agents.actions import builtin_registry
from agents.actions.sleep import run_sleep
from agents.plans import load_plan
from orchestrator.events import EventLog, EventSink, JsonlSink, MemorySink, Redactor, read_events
from orchestrator.runs import new_run_id, open_coordinator
from orchestrator.scheduler import RunStatus, Scheduler, SchedulerConfig
from orchestrator.settings import Settings
from orchestrator.verify import VerifyReport, verify_events
from streams.loader import Positions
from streams.model import Plan
from streams.validation import check_plan

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._plans import (
    CAPS,
    critical_path,
    lower_bound,
    makespan_plan,
    simulate_greedy,
    spread_plan,
    tasks_in_plan_order,
    write_plan,
)

RESULTS = Path(__file__).resolve().parent / "results"
#: The what-if collector thresholds (CPython's default: 700, 10, 10); see the report.
TUNED_GC = (50_000, 20, 20)
TARGET_RATIO = 1.05
PEER_IDEAL_S = 1.25
#: Quoted, not measured here: taken earlier on this machine with the peer shape.
PEER_REFERENCES = (
    ("bare anyio loop (earlier run)", "1.27 s"),
    ("Prefect 3, global concurrency limits", "64 s"),
    ("Prefect 3, no limits", "60 ms per task"),
)


# -- running ------------------------------------------------------------------------------


class _SilentEventLog(EventLog):
    """An event log that builds nothing: isolates the cost of events (diagnostic only)."""

    def bind(self, **context: Any) -> EventLog:
        return self

    def emit(self, event: str, **fields: Any) -> None:
        return None


class _GcClock:
    """While entered, counts garbage collections by generation and the CPU they take."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.cpu_s += time.process_time() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self)


class _NullSink:
    """An event sink that drops every event: events are built, nothing is kept or written."""

    def emit(self, event: Mapping[str, Any]) -> None:
        return None


async def _run_plan(
    plan: Plan,
    sinks: Sequence[EventSink],
    workdir: Path,
    silent: bool = False,
    redis_url: str | None = None,
) -> dict[str, float]:
    """Run ``plan`` once as ``orchestrator run`` does (less its progress view), in-process
    or with ``redis_url``'s coordinator; return the seconds of construction and of the run
    (wall-clock, CPU, garbage collection)."""
    settings = Settings(
        state_dir=workdir, redis_url=SecretStr(redis_url) if redis_url is not None else None
    )
    run_id = new_run_id()
    async with open_coordinator(settings) as coordinator:
        started = time.perf_counter()
        events = (
            _SilentEventLog(run_id, ())
            if silent
            else EventLog(run_id, sinks, redactor=Redactor(settings.secrets()))
        )
        scheduler = Scheduler(
            plan,
            run_id=run_id,
            coordinator=coordinator,
            registry=builtin_registry(),
            events=events,
            config=SchedulerConfig(
                workdir=workdir, env=settings.step_env(), kill_grace_s=settings.kill_grace_s
            ),
        )
        built, cpu = time.perf_counter(), time.process_time()
        with _GcClock() as gc_clock:
            result = await scheduler.run()
        finished, cpu_end = time.perf_counter(), time.process_time()
    if result.status is not RunStatus.SUCCEEDED:
        raise RuntimeError(f"benchmark run ended {result.status.value}: {result.streams}")
    return {
        "construct_s": built - started,
        "run_s": finished - built,
        "cpu_s": cpu_end - cpu,
        "gc_s": gc_clock.cpu_s,
        "gc_full": gc_clock.collections[2],
    }


async def _bare_loop(
    tasks: Sequence[tuple[str, float]], caps: Mapping[str, int | None]
) -> dict[str, float]:
    """The floor: one task per step, each holding a CapacityLimiter token of its class
    (none for an unlimited class); return wall-clock and CPU seconds."""
    limiters = {cls: anyio.CapacityLimiter(cap) for cls, cap in caps.items() if cap is not None}

    async def one(cls: str, seconds: float) -> None:
        limiter = limiters.get(cls)
        if limiter is None:
            await anyio.sleep(seconds)
            return
        async with limiter:
            await anyio.sleep(seconds)

    started, cpu = time.perf_counter(), time.process_time()
    with _GcClock() as gc_clock:
        async with anyio.create_task_group() as tg:
            for cls, seconds in tasks:
                tg.start_soon(one, cls, seconds)
    return {
        "run_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "gc_s": gc_clock.cpu_s,
        "gc_full": gc_clock.collections[2],
    }


class _GcThresholds:
    """Sets the collector's thresholds while entered (None: leave them as they are)."""

    def __init__(self, thresholds: tuple[int, int, int] | None) -> None:
        self._thresholds = thresholds
        self._saved = gc.get_threshold()

    def __enter__(self) -> None:
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)

    def __exit__(self, *exc_info: object) -> None:
        gc.set_threshold(*self._saved)


class Bench:
    """Shared settings of one benchmark session and the checks it collected."""

    def __init__(self, workdir: Path, backend: str, repeats: int) -> None:
        self.workdir = workdir
        self.backend = backend
        self.repeats = repeats
        self.checks: dict[str, dict[str, Any]] = {}
        self.last_events: list[dict[str, Any]] = []
        self._runs = 0

    def run_plan(
        self,
        plan: Plan,
        sink: str,
        label: str,
        gc_thresholds: tuple[int, int, int] | None = None,
    ) -> dict[str, float]:
        """Run ``plan`` with events to a ``jsonl`` file, a ``memory`` list, ``both``, a
        sink that drops them (``null``) or not even built (``silent``), then verify them: a
        ``jsonl``-only run is checked from the file read back afterwards, so checking costs
        the timed run nothing."""
        self._runs += 1
        path = self.workdir / f"run-{self._runs}.jsonl"
        jsonl = JsonlSink(path) if sink in ("jsonl", "both") else None
        memory = MemorySink() if sink in ("memory", "both") else None
        sinks: list[EventSink] = [s for s in (jsonl, memory) if s is not None]
        if sink == "null":
            sinks.append(_NullSink())
        gc.collect()
        try:
            with _GcThresholds(gc_thresholds):
                timing = anyio.run(
                    _run_plan, plan, sinks, self.workdir, sink == "silent", backend=self.backend
                )
        finally:
            if jsonl is not None:
                jsonl.close()
        if jsonl is not None or memory is not None:
            events = memory.events if memory is not None else read_events(path)
            self.check(label, verify_events([events]))
            self.last_events = events
            timing["events"] = len(events)
        path.unlink(missing_ok=True)
        return timing

    def floor(
        self, tasks: Sequence[tuple[str, float]], gc_thresholds: tuple[int, int, int] | None = None
    ) -> dict[str, float]:
        gc.collect()
        with _GcThresholds(gc_thresholds):
            return anyio.run(_bare_loop, tasks, CAPS, backend=self.backend)

    def check(self, label: str, report: VerifyReport) -> None:
        entry = self.checks.setdefault(
            label, {"runs": 0, "ok": True, "violations": [], "peak": {}, "lock_grants": {}}
        )
        entry["runs"] += 1
        entry["ok"] = entry["ok"] and report.ok
        entry["violations"].extend(report.violations[:5])
        for cls, peak in report.peak.items():
            entry["peak"][cls] = max(entry["peak"].get(cls, 0), peak)
        entry["lock_grants"] = dict(report.lock_grants)
        entry["caps"] = dict(report.caps)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": _median(values),
        "min": min(values),
        "max": max(values),
        "samples": list(values),
    }


# -- the benchmarks -------------------------------------------------------------------------


def bench_dispatch(bench: Bench, plan: Plan) -> dict[str, Any]:
    tasks = [(cls, 0.0) for cls, _ in tasks_in_plan_order(plan)]
    n = len(tasks)
    runs: dict[str, list[dict[str, float]]] = {
        "floor": [],
        "jsonl": [],
        "memory": [],
        "null": [],
        "silent": [],
        "floor_gc": [],
        "jsonl_gc": [],
    }
    variants = list(runs)
    for repeat in range(bench.repeats):
        # Rotate the order each repeat so no variant always runs first (warm-up, GC state).
        shift = repeat % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            tuned = TUNED_GC if variant.endswith("_gc") else None
            if variant.startswith("floor"):
                runs[variant].append(bench.floor(tasks, tuned))
            else:
                sink = variant.removesuffix("_gc")
                runs[variant].append(bench.run_plan(plan, sink, f"dispatch ({sink})", tuned))
    per_step = {
        variant: {
            kind: _summary([s[f"{kind}_s"] / n * 1e6 for s in samples])
            for kind in ("run", "cpu", "gc")
        }
        for variant, samples in runs.items()
    }
    out: dict[str, Any] = {"steps": n, "tuned_gc_thresholds": TUNED_GC}
    for floor in ("floor", "floor_gc"):
        out[floor] = {**per_step[floor], "gc_full": _median([s["gc_full"] for s in runs[floor]])}
    for sink in ("jsonl", "memory", "null", "silent", "jsonl_gc"):
        samples = runs[sink]
        floor = "floor_gc" if sink.endswith("_gc") else "floor"
        out[sink] = {
            **per_step[sink],
            "construct_ms": _median([s["construct_s"] * 1e3 for s in samples]),
            "gc_full": _median([s["gc_full"] for s in samples]),
            "events_per_step": samples[0].get("events", 0) / n,
            "ratio_to_floor": {
                kind: per_step[sink][kind]["median"] / per_step[floor][kind]["median"]
                for kind in ("run", "cpu")
            },
        }
    return out


def bench_makespan(bench: Bench, plan: Plan) -> dict[str, Any]:
    bound = lower_bound(plan)
    _, chain = critical_path(plan)
    simulated = simulate_greedy(plan)
    handoff = simulate_greedy(plan, handoff=True)
    samples = [bench.run_plan(plan, "both", "makespan")["run_s"] for _ in range(bench.repeats)]
    measured = _median(samples)
    return {
        "critical_chain": ["/".join(key) for key in chain],
        "critical_chain_waits": _chain_waits(bench.last_events, chain),
        "steps": plan.total_steps(),
        "lower_bound_s": bound.bound_s,
        "binding": bound.binding,
        "critical_path_s": bound.critical_path_s,
        "class_work_per_cap_s": dict(bound.class_s),
        "lock_work_s": dict(bound.lock_s),
        "simulated_policy_s": simulated,
        "simulated_handoff_s": handoff,
        "makespan_s": _summary(samples),
        "ratio_to_bound": measured / bound.bound_s,
        "ratio_to_simulated": measured / simulated,
        "target_met": measured <= TARGET_RATIO * bound.bound_s,
    }


def _chain_waits(
    events: Sequence[Mapping[str, Any]], chain: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """How long each step of the critical chain waited for its grant in one run, and what
    held it up: the chain's waits are what a makespan loses to the policy."""
    on_chain = set(chain)
    blocked: dict[tuple[str, str], str] = {}
    waits: list[dict[str, Any]] = []
    for event in events:
        key = (str(event.get("stream")), str(event.get("step")))
        if key not in on_chain:
            continue
        if event["event"] == "step_waiting":
            blocked[key] = "; ".join(event.get("waiting_for", []))
        elif event["event"] == "step_started":
            waits.append(
                {
                    "step": "/".join(key),
                    "waited_ms": float(event.get("waited_s", 0.0)) * 1e3,
                    "blocked_by": blocked.get(key, ""),
                }
            )
    return waits


def bench_peer(bench: Bench, plan: Plan) -> dict[str, Any]:
    tasks = tasks_in_plan_order(plan)
    floor: list[float] = []
    runs: list[float] = []
    for repeat in range(bench.repeats):
        if repeat % 2:  # alternate which of the two goes first
            runs.append(bench.run_plan(plan, "both", "peer")["run_s"])
            floor.append(bench.floor(tasks)["run_s"])
        else:
            floor.append(bench.floor(tasks)["run_s"])
            runs.append(bench.run_plan(plan, "both", "peer")["run_s"])
    bound = lower_bound(plan).bound_s
    return {
        "steps": len(tasks),
        "ideal_s": PEER_IDEAL_S,
        "ideal_from_plan_s": bound,
        "scheduler_s": _summary(runs),
        "bare_anyio_s": _summary(floor),
        "ratio_to_ideal": _median(runs) / PEER_IDEAL_S,
        "bare_ratio_to_ideal": _median(floor) / PEER_IDEAL_S,
        "target_met": _median(runs) <= TARGET_RATIO * PEER_IDEAL_S,
        "quoted_references": dict(PEER_REFERENCES),
    }


def bench_validation(bench: Bench, data: Mapping[str, Any]) -> dict[str, Any]:
    """Time ``load_plan`` on YAML and JSON files, and the two stages after parsing on their
    own (pydantic's ``Plan.model_validate``, then ``check_plan``'s cross-references), so the
    remainder is reading the file: parsing, positions, duplicate keys."""
    registry = builtin_registry()
    out: dict[str, Any] = {}
    model: list[float] = []
    checks: list[float] = []
    for suffix in ("yaml", "json"):
        path = write_plan(data, bench.workdir / f"validate.{suffix}")
        samples: list[float] = []
        for _ in range(bench.repeats):
            gc.collect()
            started = time.perf_counter()
            plan = load_plan(path)
            samples.append(time.perf_counter() - started)
            gc.collect()
            started = time.perf_counter()
            Plan.model_validate(data)
            validated = time.perf_counter()
            check_plan(plan, Positions(), str(path), registry)
            model.append(validated - started)
            checks.append(time.perf_counter() - validated)
        out[suffix] = {
            "steps": plan.total_steps(),
            "bytes": path.stat().st_size,
            "load_s": _summary(samples),
        }
    out["model_validate_s"] = _median(model)
    out["check_plan_s"] = _median(checks)
    yaml_path = bench.workdir / "validate.yaml"
    tuned: list[float] = []
    for _ in range(bench.repeats):
        gc.collect()
        with _GcThresholds(TUNED_GC):
            started = time.perf_counter()
            load_plan(yaml_path)
            tuned.append(time.perf_counter() - started)
    out["yaml_tuned_gc"] = {"thresholds": TUNED_GC, "load_s": _summary(tuned)}
    return out


def bench_memory(bench: Bench, plan_path: Path) -> dict[str, Any]:
    """Run the memory measurement twice in fresh processes: tracemalloc slows and inflates
    a run, so the RSS figure comes from a process without it."""
    out: dict[str, Any] = {}
    for mode in ("tracemalloc", "rss"):
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-child",
            str(plan_path),
            "--memory-mode",
            mode,
            "--backend",
            bench.backend,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory child ({mode}) failed:\n{done.stderr}")
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        bench.check("memory", _report_from(out[mode].pop("verify")))
    return out


def _report_from(data: Mapping[str, Any]) -> VerifyReport:
    report = VerifyReport(events=data["events"], steps=data["steps"])
    report.violations = list(data["violations"])
    report.peak = dict(data["peak"])
    report.caps = dict(data["caps"])
    return report


def _proc_status_kib(*fields: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in fields:
            found[name] = int(value.split()[0])
    return found


def memory_child(plan_path: Path, mode: str, backend: str) -> dict[str, Any]:
    """Load and run the plan at ``plan_path`` in this (fresh) process; return its memory."""
    with tempfile.TemporaryDirectory(prefix="orch-bench-mem-") as tmp:
        workdir = Path(tmp)
        events_path = workdir / "events.jsonl"
        gc.collect()
        out: dict[str, Any] = {}
        if mode == "tracemalloc":
            tracemalloc.start()
        base = _proc_status_kib("VmRSS")["VmRSS"]
        plan = load_plan(plan_path)
        if mode == "tracemalloc":
            current, peak = tracemalloc.get_traced_memory()
            out.update(load_peak_mib=peak / 2**20, plan_retained_mib=current / 2**20)
            tracemalloc.reset_peak()
        else:
            out["rss_after_load_delta_mib"] = (_proc_status_kib("VmRSS")["VmRSS"] - base) / 1024
        sink = JsonlSink(events_path)
        try:
            anyio.run(_run_plan, plan, [sink], workdir, backend=backend)
        finally:
            sink.close()
        if mode == "tracemalloc":
            current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out.update(
                run_peak_mib=peak / 2**20,
                after_run_mib=current / 2**20,
                peak_mib=max(peak / 2**20, out["load_peak_mib"]),
            )
        else:
            status = _proc_status_kib("VmRSS", "VmHWM")
            out.update(
                rss_base_mib=base / 1024,
                rss_peak_delta_mib=(status["VmHWM"] - base) / 1024,
                rss_end_delta_mib=(status["VmRSS"] - base) / 1024,
            )
        report = verify_events([read_events(events_path)])
    out["steps"] = plan.total_steps()
    out["verify"] = {
        "events": report.events,
        "steps": report.steps,
        "violations": report.violations[:5],
        "peak": report.peak,
        "caps": report.caps,
    }
    return out


# -- profile --------------------------------------------------------------------------------

_Key = tuple[str, int, str]


def _code_key(func: Callable[..., Any]) -> _Key:
    code = func.__code__
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _cumulative(
    raw: Mapping[_Key, tuple[Any, ...]], key: _Key, *, callers: Sequence[str] | None = None
) -> float:
    """Inclusive seconds of ``key``; with ``callers``, only of calls from those functions."""
    row = raw.get(key)
    if row is None:
        return 0.0
    if callers is None:
        return float(row[3])
    return float(sum(ct for (_, _, name), (_, _, _, ct) in row[4].items() if name in callers))


def profile_dispatch(bench: Bench, plan: Plan) -> dict[str, Any]:
    """cProfile one JsonlSink dispatch run; write the listing; return where the time went.

    ``parts`` are inclusive times of each layer's entry points (EventLog.emit, the
    coordinator's acquire and release, the action, the scheduler's per-step task), so
    they add up to the profiled total. cProfile inflates call-heavy Python code more than
    C code: read the shares as a ranking, not as wall-clock costs.
    """
    from orchestrator.coordination.memory import InProcessCoordinator

    path = bench.workdir / "profile.jsonl"
    sink = JsonlSink(path)
    gc.collect()
    profiler = cProfile.Profile()
    try:
        with _GcClock() as gc_clock:
            profiler.enable()
            anyio.run(_run_plan, plan, [sink], bench.workdir, backend=bench.backend)
            profiler.disable()
    finally:
        sink.close()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    raw: dict[_Key, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]  # not in typeshed
    total = float(stats.total_tt)  # type: ignore[attr-defined]  # not in typeshed
    steps = plan.total_steps()
    emit = _code_key(EventLog.emit)
    # The per-step task of the scheduler (a closure, found by name), whatever module has it.
    run_one = next((k for k in raw if k[2] == "run_one" and "/orchestrator/" in k[0]), None)
    events = _cumulative(raw, emit)
    coordinator = (
        _cumulative(raw, _code_key(InProcessCoordinator.acquire))
        + _cumulative(raw, _code_key(InProcessCoordinator.release))
        - _cumulative(raw, emit, callers=("blocked",))  # step_waiting, emitted inside acquire
    )
    action = _cumulative(raw, _code_key(run_sleep))
    construct = _cumulative(raw, _code_key(Scheduler.__init__))
    in_steps = _cumulative(raw, run_one) if run_one is not None else 0.0
    parts: dict[str, float] = {
        "events (EventLog.emit: structlog, stamp, orjson, write+flush)": events,
        "coordinator (acquire + release)": coordinator,
        "sleep action": action,
    }
    if run_one is not None:
        parts["scheduler's per-step code (Need, context, env, anyio scopes, clocks)"] = (
            in_steps - events - coordinator - action
        )
        parts["event loop, task spawn and switch, run and stream setup"] = (
            total - in_steps - construct
        )
    parts["Scheduler.__init__ (parse every step's 'with')"] = construct
    lookups = sum(
        row[1]
        for key, row in raw.items()
        if key[0].endswith("anyio/_core/_eventloop.py") and key[2] == "get_async_backend"
    )
    for key in ("tottime", "cumulative"):
        stats.sort_stats(key).print_stats(45)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scheduler-profile.txt").write_text(text.getvalue(), encoding="utf-8")
    top = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:12]
    return {
        "steps": steps,
        "total_s": total,
        "parts_share": {name: value / total for name, value in parts.items()},
        "anyio_backend_lookups_per_step": lookups / steps,
        # cProfile charges a collection to whichever function allocated when it started.
        "gc_share": gc_clock.cpu_s / total,
        "gc_full": gc_clock.collections[2],
        "events_per_step": raw[emit][1] / steps if emit in raw else 0.0,
        "top_tottime": [
            {"function": f"{Path(f).name}:{line}({name})", "tottime_s": row[2], "calls": row[1]}
            for (f, line, name), row in top
        ],
    }


# -- report ---------------------------------------------------------------------------------


def _git(*args: str) -> str:
    """Output of a read-only git command in the repository ("" if git is unavailable)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=RESULTS.parent.parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    versions = {
        name: metadata.version(name)
        for name in ("anyio", "pydantic", "PyYAML", "orjson", "structlog")
    }
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpu": cpu,
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gc_thresholds": gc.get_threshold(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
    }


Row = tuple[str, str, str, str]


def _rows_dispatch(d: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    floor = d["floor"]
    for sink, label in (
        ("jsonl", "JsonlSink"),
        ("memory", "MemorySink"),
        ("null", "events dropped*"),
        ("silent", "events off*"),
    ):
        rows.append(
            (
                f"1 dispatch, {d['steps']} no-op steps, {label}",
                f"{d[sink]['run']['median']:.0f} us/step wall, {d[sink]['cpu']['median']:.0f} CPU",
                f"bare anyio {floor['run']['median']:.0f} wall, {floor['cpu']['median']:.0f} CPU",
                f"{d[sink]['ratio_to_floor']['run']:.1f}x wall, "
                f"{d[sink]['ratio_to_floor']['cpu']:.1f}x CPU",
            )
        )
    rows.append(
        (
            "  of which garbage collection, CPU",
            " / ".join(f"{d[v]['gc']['median']:.0f}" for v in ("jsonl", "memory", "null", "silent"))
            + " us/step",
            f"bare anyio {floor['gc']['median']:.0f} us/step",
            "",
        )
    )
    rows.append(
        (
            "  full (gen 2) collections per run",
            " / ".join(f"{d[v]['gc_full']:.0f}" for v in ("jsonl", "memory", "null", "silent")),
            f"bare anyio {floor['gc_full']:.0f}",
            "",
        )
    )
    tuned, floor_gc = d["jsonl_gc"], d["floor_gc"]
    rows.append(
        (
            f"  what-if: gc thresholds {tuple(d['tuned_gc_thresholds'])}, JsonlSink",
            f"{tuned['run']['median']:.0f} us/step wall, {tuned['cpu']['median']:.0f} CPU",
            f"bare anyio {floor_gc['run']['median']:.0f} wall, {floor_gc['cpu']['median']:.0f} CPU",
            f"{tuned['ratio_to_floor']['run']:.1f}x wall, "
            f"{tuned['ratio_to_floor']['cpu']:.1f}x CPU",
        )
    )
    rows.append(
        (
            "    of which garbage collection, CPU",
            f"{tuned['gc']['median']:.0f} us/step, {tuned['gc_full']:.0f} full",
            f"bare anyio {floor_gc['gc']['median']:.0f} us/step, {floor_gc['gc_full']:.0f} full",
            "",
        )
    )
    rows.append(
        ("  scheduler construction (JsonlSink)", f"{d['jsonl']['construct_ms']:.0f} ms", "", "")
    )
    return rows


def _rows_makespan(m: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    rows.append(
        (
            f"2 makespan, {m['steps']} sleep steps, locks",
            f"{m['makespan_s']['median'] * 1e3:.0f} ms",
            f"bound {m['lower_bound_s'] * 1e3:.0f} ms ({m['binding']})",
            f"{m['ratio_to_bound']:.3f}, <= {TARGET_RATIO}: "
            f"{'met' if m['target_met'] else 'MISSED'}",
        )
    )
    rows.append(
        (
            "  same policy simulated, zero overhead",
            f"{m['simulated_policy_s'] * 1e3:.0f} ms",
            f"measured/simulated {m['ratio_to_simulated']:.3f}",
            "",
        )
    )
    rows.append(
        (
            "  what-if: successors queue before release",
            f"{m['simulated_handoff_s'] * 1e3:.0f} ms (simulated)",
            f"{m['simulated_handoff_s'] / m['lower_bound_s']:.3f} of the bound",
            "",
        )
    )
    return rows


def _rows_makespan_waits(m: Mapping[str, Any]) -> list[str]:
    waits = [w for w in m["critical_chain_waits"] if w["waited_ms"] >= 1.0]
    total = sum(w["waited_ms"] for w in m["critical_chain_waits"])
    lines = [
        f"makespan: the critical chain ({len(m['critical_chain'])} steps, "
        f"{m['critical_path_s'] * 1e3:.0f} ms) waited {total:.0f} ms for grants in the last run"
    ]
    lines += [
        f"  {w['step']} waited {w['waited_ms']:.0f} ms: "
        + (w["blocked_by"] or "never blocked (event-loop latency)")
        for w in waits
    ]
    return lines


def _rows_memory(mem: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    rows.append(
        (
            f"3 memory, load+run {mem['rss']['steps']} steps",
            f"tracemalloc peak {mem['tracemalloc']['peak_mib']:.0f} MiB",
            f"load peak {mem['tracemalloc']['load_peak_mib']:.0f} MiB, plan "
            f"{mem['tracemalloc']['plan_retained_mib']:.0f} MiB",
            "",
        )
    )
    rows.append(
        (
            "",
            f"RSS peak +{mem['rss']['rss_peak_delta_mib']:.0f} MiB",
            f"after load +{mem['rss']['rss_after_load_delta_mib']:.0f} MiB, "
            f"base {mem['rss']['rss_base_mib']:.0f} MiB",
            "",
        )
    )
    return rows


def _rows_peer(p: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    rows.append(
        (
            "4 peer, 4 x 50 x 50 ms, caps 2/3/2/-",
            f"{p['scheduler_s']['median']:.3f} s",
            f"ideal {p['ideal_s']:.2f} s; bare anyio {p['bare_anyio_s']['median']:.3f} s",
            f"{p['ratio_to_ideal']:.3f}, <= {TARGET_RATIO}: "
            f"{'met' if p['target_met'] else 'MISSED'}",
        )
    )
    rows.extend(
        ("  quoted reference, not measured here", value, name, "")
        for name, value in PEER_REFERENCES
    )
    return rows


def _rows_validation(v: Mapping[str, Any]) -> list[Row]:
    rows: list[Row] = []
    after_parse = v["model_validate_s"] + v["check_plan_s"]
    rows.extend(
        (
            f"5 load_plan, {v[suffix]['steps']} steps, {suffix.upper()}",
            f"{v[suffix]['load_s']['median'] * 1e3:.0f} ms",
            f"{v[suffix]['bytes'] / 2**20:.1f} MiB file; reading it "
            f"{(v[suffix]['load_s']['median'] - after_parse) * 1e3:.0f} ms",
            "",
        )
        for suffix in ("yaml", "json")
    )
    rows.append(
        (
            "  of which, after parsing (either format)",
            f"{after_parse * 1e3:.0f} ms",
            f"model_validate {v['model_validate_s'] * 1e3:.0f} ms, "
            f"check_plan {v['check_plan_s'] * 1e3:.0f} ms",
            "",
        )
    )
    rows.append(
        (
            f"  what-if: gc thresholds {tuple(v['yaml_tuned_gc']['thresholds'])}, YAML",
            f"{v['yaml_tuned_gc']['load_s']['median'] * 1e3:.0f} ms",
            "",
            "",
        )
    )
    return rows


_SECTIONS: tuple[tuple[str, Callable[[Mapping[str, Any]], list[Row]]], ...] = (
    ("dispatch", _rows_dispatch),
    ("makespan", _rows_makespan),
    ("memory", _rows_memory),
    ("peer", _rows_peer),
    ("validation", _rows_validation),
)


def render(results: Mapping[str, Any]) -> str:
    """The results as a plain-text table, then the checks and the profile summary."""
    rows: list[Row] = [("benchmark", "measured (median)", "floor / peer / bound", "ratio, target")]
    for name, section in _SECTIONS:
        if name in results:
            rows += section(results[name])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    worst = max(max(pair) for pair in results["meta"]["load_avg_1min"].values())
    load = f"1-min load average up to {worst:.1f} on {results['meta']['nproc']} CPUs"
    if "dispatch" in results:
        d = results["dispatch"]
        lines.append(
            "* diagnostic variants, not modes: 'events dropped' builds every event and hands "
            "it to a sink that drops it; 'events off' replaces EventLog.emit with a no-op"
        )
        cpu_share = _median(
            [
                c / w
                for v in ("jsonl", "memory", "null", "silent", "jsonl_gc")
                for c, w in zip(d[v]["cpu"]["samples"], d[v]["run"]["samples"], strict=True)
            ]
        )
        load = f"CPU/wall of the dispatch runs {cpu_share:.2f} (1.00: a core to itself); " + load
        if cpu_share < 0.9:
            load += " -- OTHER LOAD: timings are inflated"
    lines.append(load)
    if "makespan" in results:
        lines += ["", *_rows_makespan_waits(results["makespan"])]
    lines.append("")
    for label, entry in results["verify"].items():
        peaks = ", ".join(
            f"{c} {entry['peak'].get(c, 0)}/{'-' if cap is None else cap}"
            for c, cap in entry.get("caps", {}).items()
        )
        locks = ", ".join(f"{r} {n}" for r, n in entry["lock_grants"].items())
        lines.append(
            f"verify {label}: {'OK' if entry['ok'] else 'VIOLATED'} "
            f"({entry['runs']} runs; peak/cap {peaks}"
            + (f"; lock grants {locks}" if locks else "")
            + ")"
        )
        lines += [f"  violation: {text}" for text in entry["violations"]]
    prof = results.get("profile")
    if prof:
        lines.append("")
        lines.append(
            f"cProfile of one dispatch run ({prof['steps']} steps, JsonlSink), "
            f"{prof['total_s']:.2f} s under the profiler:"
        )
        lines += [f"  {share:6.1%}  {part}" for part, share in prof["parts_share"].items()]
        lines.append(
            f"  garbage collection ({prof['gc_full']} full collections) took the equivalent of "
            f"{prof['gc_share']:.1%}, charged to whatever function allocated at the time"
        )
        lines.append(
            f"  {prof['events_per_step']:.2f} events and "
            f"{prof['anyio_backend_lookups_per_step']:.1f} anyio backend lookups "
            "(sniffio) per step"
        )
        lines.append("  top functions by own time:")
        lines += [
            f"    {row['tottime_s']:7.3f} s {row['calls']:8d} calls  {row['function']}"
            for row in prof["top_tottime"][:8]
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller smoke version")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--output", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated stages to run (dispatch,makespan,memory,peer,validation)",
    )
    parser.add_argument("--memory-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-mode", default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.memory_mode, args.backend)))
        return 0

    steps = 2_000 if args.quick else 10_000
    repeats = args.repeats or (2 if args.quick else 5)
    output = args.output or RESULTS / ("scheduler-quick.json" if args.quick else "scheduler.json")
    results: dict[str, Any] = {
        "meta": {
            **machine(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "backend": args.backend,
            "repeats": repeats,
            "quick": args.quick,
        },
    }
    with tempfile.TemporaryDirectory(prefix="orch-bench-") as tmp:
        bench = Bench(Path(tmp), args.backend, repeats)
        big_data = spread_plan("dispatch", streams=4, steps_per_stream=steps // 4, seconds=0.0)
        big_path = write_plan(big_data, bench.workdir / "dispatch.yaml")
        big = load_plan(big_path)
        peer = load_plan(
            write_plan(
                spread_plan("peer", streams=4, steps_per_stream=50, seconds=0.05),
                bench.workdir / "peer.yaml",
            )
        )
        makespan = load_plan(write_plan(makespan_plan(), bench.workdir / "makespan.yaml"))
        stages: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
            ("dispatch", lambda: bench_dispatch(bench, big)),
            ("makespan", lambda: bench_makespan(bench, makespan)),
            ("memory", lambda: bench_memory(bench, big_path)),
            ("peer", lambda: bench_peer(bench, peer)),
            ("validation", lambda: bench_validation(bench, big_data)),
        )
        load: dict[str, tuple[float, float]] = {}
        chosen = {name for name in args.only.split(",") if name} or {name for name, _ in stages}
        for name, stage in stages:
            if name not in chosen:
                continue
            started, load_before = time.perf_counter(), os.getloadavg()[0]
            results[name] = stage()
            load[name] = (load_before, os.getloadavg()[0])
            print(f"{name}: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
        results["meta"]["load_avg_1min"] = load
        if not args.no_profile and "dispatch" in chosen:
            results["profile"] = profile_dispatch(bench, big)
        results["verify"] = bench.checks
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(results))
    print(f"\nresults: {output}")
    ok = all(entry["ok"] for entry in bench.checks.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
