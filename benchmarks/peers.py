"""Peer comparison: the orchestrator against the bare anyio floor and arq, in one run.

Two shapes (from :mod:`benchmarks._plans`, the ones the other benchmarks use):

- ``peer``: 4 streams x 50 independent 50 ms ``sleep`` steps, step i of stream s in class
  [cpu, io, network, light][(s + i) % 4] under caps 2/3/2/unlimited; ideal 1.25 s;
- ``10k``: the same spread of 10,000 no-op steps (``sleep 0``).

Each is run, interleaved ``--repeats`` times, by:

- the floor: one anyio task per step holding a CapacityLimiter token of its class;
- the orchestrator's scheduler in-process, and with its Redis coordinator (``--redis``);
  events go to a JSONL file, which is read back afterwards and verified (caps, locks);
- arq, a job queue a user might pick instead: one queue and worker per class with
  ``max_jobs`` = cap, installed from PyPI into ``.bench-venv/`` by this script (see
  ``_arq_child.py``); it runs in a subprocess on the same redis-server.

The scheduler runs and the floor use the GC thresholds the CLI sets; arq runs as a user
would run it. Figures are medians of wall-clock seconds. Usage::

    .venv/bin/python benchmarks/peers.py [--repeats N] [--repeats-10k N] [--url URL] [--no-write]

Prints the table, writes ``benchmarks/results/peers.json`` and, unless ``--no-write``,
the section between the ``peers`` markers of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import redis

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._plans import CAPS, spread_plan, tasks_in_plan_order, write_plan
from benchmarks.locks import start_server
from benchmarks.scheduler import (
    PEER_IDEAL_S,
    RESULTS,
    TUNED_GC,
    Bench,
    _GcThresholds,
    _median,
    _run_plan,
    machine,
)
from orchestrator.events import JsonlSink, read_events
from orchestrator.verify import verify_events
from streams.loader import load_plan

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
ARQ_REQUIREMENT = "arq==0.28.0"
LEASE_S = 10.0  # Settings' default: a fresh redis-server grants nothing for one lease
MARK_BEGIN = "<!-- peers:begin -->"
MARK_END = "<!-- peers:end -->"
SYSTEMS = ("floor", "ours", "ours_redis", "arq")
SYSTEM_NAMES = {
    "floor": "bare anyio floor",
    "ours": "orchestrator, in-process",
    "ours_redis": "orchestrator, `--redis`",
    "arq": "arq 0.28 (peer)",
}


def bench_python() -> Path:
    """The Python of ``.bench-venv``, created with arq from PyPI when missing."""
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    probe = [str(python), "-c", "import arq"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        pip = [str(python), "-m", "pip", "install", "-q", ARQ_REQUIREMENT]
        subprocess.run(pip, check=True, timeout=600)
    return python


def run_arq(python: Path, url: str, tasks: list[tuple[str, float]]) -> dict[str, Any]:
    config = json.dumps({"url": url, "tasks": tasks, "caps": CAPS})
    child = Path(__file__).resolve().parent / "_arq_child.py"
    done = subprocess.run(
        [str(python), str(child)],
        input=config,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["jobs_complete"] != len(tasks):
        raise RuntimeError(f"arq completed {result['jobs_complete']} of {len(tasks)} jobs")
    return result


def run_ours(bench: Bench, plan_path: Path, label: str, url: str | None) -> dict[str, Any]:
    plan = load_plan(plan_path)
    events_path = bench.workdir / f"{label}.jsonl"
    sink = JsonlSink(events_path)
    try:
        with _GcThresholds(TUNED_GC):
            timing = anyio.run(_run_plan, plan, [sink], bench.workdir, False, url)
    finally:
        sink.close()
    bench.check(label, verify_events([read_events(events_path)]))
    events_path.unlink(missing_ok=True)
    return timing


def measure(
    bench: Bench, name: str, steps: int, seconds: float, url: str, python: Path, repeats: int
) -> dict[str, Any]:
    per_stream = steps // 4
    data = spread_plan(name, streams=4, steps_per_stream=per_stream, seconds=seconds)
    plan_path = write_plan(data, bench.workdir / f"{name}.yaml")
    tasks = tasks_in_plan_order(load_plan(plan_path))
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "floor": lambda: bench.floor(tasks, TUNED_GC),
        "ours": lambda: run_ours(bench, plan_path, f"{name}-ours", None),
        "ours_redis": lambda: run_ours(bench, plan_path, f"{name}-redis", url),
        "arq": lambda: run_arq(python, url, tasks),
    }
    samples: dict[str, list[float]] = {system: [] for system in SYSTEMS}
    failed: dict[str, str] = {}
    for repeat in range(repeats):
        order = SYSTEMS if repeat % 2 == 0 else tuple(reversed(SYSTEMS))
        for system in order:
            if system in failed:
                continue
            try:
                samples[system].append(runs[system]()["run_s"])
            except Exception as exc:  # reported in the table; the other systems go on
                failed[system] = f"{type(exc).__name__}: {str(exc)[:200]}"
                continue
            print(f"  {name} {system}: {samples[system][-1]:.3f} s", file=sys.stderr)
    medians = {system: _median(values) for system, values in samples.items() if values}
    return {
        "steps": len(tasks),
        "step_s": seconds,
        "repeats": repeats,
        "samples_s": samples,
        "median_s": medians,
        "failed": failed,
    }


def table(results: dict[str, Any]) -> str:
    peer, noop = results["shapes"]["peer"], results["shapes"]["10k"]
    lines = [
        "| system | peer shape: median | / ideal 1.25 s | 10,000 no-ops: median | / floor "
        "| / in-process |",
        "|---|---|---|---|---|---|",
    ]
    for system in SYSTEMS:
        p, n = peer["median_s"].get(system), noop["median_s"].get(system)
        floor, ours = noop["median_s"].get("floor"), noop["median_s"].get("ours")
        cells = [SYSTEM_NAMES[system]]
        cells += ["failed", "-"] if p is None else [f"{p:.3f} s", f"{p / PEER_IDEAL_S:.2f}"]
        if n is None:
            cells += ["failed", "-", "-"]
        else:
            cells += [
                f"{n:.2f} s",
                f"{n / floor:.1f}" if floor else "-",
                f"{n / ours:.2f}" if ours else "-",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    for shape in ("peer", "10k"):
        for system, reason in results["shapes"][shape]["failed"].items():
            lines.append(f"\n{shape}, {SYSTEM_NAMES[system]} failed: {reason}")
    return "\n".join(lines)


def section(results: dict[str, Any]) -> str:
    m = results["machine"]
    load = results["load_average"]
    ok = all(check["ok"] for check in results["checks"].values())
    return "\n".join(
        [
            MARK_BEGIN,
            "## Peers: the floor, the orchestrator and arq in one run (`benchmarks/peers.py`)",
            "",
            f"Measured {m['date']} on {m['cpu']} ({m['nproc']} CPUs, {m['memory_gib']} GiB), "
            f"Python {m['python']}, commit {m['commit']}. The machine is shared and was "
            f"loaded: 1-minute load average {load['before']:.1f} before, {load['after']:.1f} "
            f"after. Medians of {results['repeats']} interleaved runs of the peer shape "
            f"and {results['shapes']['10k']['repeats']} of the 10,000 steps; every orchestrator "
            f"run's events verified (caps, locks): {'all passed' if ok else '**FAILED**'}.",
            "",
            table(results),
            "",
            "arq: one queue and worker per class, `max_jobs` = cap, polling every 5 ms, "
            "time from the first enqueue to the last job's end; Redis is a local "
            "redis-server without persistence, shared by `--redis` and arq.",
            MARK_END,
        ]
    )


def write_section(text: str, path: Path) -> None:
    current = path.read_text(encoding="utf-8")
    if MARK_BEGIN in current and MARK_END in current:
        head, rest = current.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        path.write_text(head + text + tail, encoding="utf-8")
    else:
        path.write_text(current.rstrip("\n") + "\n\n" + text + "\n", encoding="utf-8")


def wait_until_grants(url: str) -> None:
    """A redis-server younger than a lease grants nothing yet (see the coordinator)."""
    client = redis.Redis.from_url(url)
    try:
        uptime = float(client.info("server")["uptime_in_seconds"])
    finally:
        client.close()
    time.sleep(max(0.0, LEASE_S + 1 - uptime))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="of the peer shape")
    parser.add_argument("--repeats-10k", type=int, default=1, help="of the 10,000-step shape")
    parser.add_argument("--url", help="an existing Redis (default: start one here)")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    python = bench_python()
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        server, url = (None, args.url) if args.url else start_server(Path(tmp))
        try:
            wait_until_grants(url)
            bench = Bench(Path(tmp), "asyncio", args.repeats)
            before = os.getloadavg()[0]
            shapes = {
                "peer": measure(bench, "peer", 200, 0.05, url, python, args.repeats),
                "10k": measure(bench, "10k", 10_000, 0.0, url, python, args.repeats_10k),
            }
            results = {
                "machine": machine(),
                "repeats": args.repeats,
                "load_average": {"before": before, "after": os.getloadavg()[0]},
                "shapes": shapes,
                "checks": bench.checks,
            }
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    text = section(results)
    print(text)
    if not args.no_write:
        write_section(text, ROOT / "BENCHMARKS.md")
    return 0 if all(check["ok"] for check in bench.checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
