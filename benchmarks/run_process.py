"""10,000 no-op steps through ``orchestrator run``, the whole process, against its floor.

Each repetition runs, in fresh child processes, interleaved:

- ``orchestrator run --plain`` of the dispatch benchmark's plan (4 streams x 2,500 ``sleep 0``
  steps, ``needs: []``, caps 2/3/2/unlimited; JSON, so YAML composition is not timed), with
  its own state directory (events file and SQLite store);
- the floor: a bare anyio process that imports anyio only and runs one task per step, each
  holding a CapacityLimiter token of its class (none for the unlimited class);
- optionally the same ``orchestrator run`` from another checkout (``--other ROOT``, e.g. the
  main branch's worktree with its own ``.venv``), to compare before and after in one run.

Children run without ``PYTHONDONTWRITEBYTECODE`` (set on the shared machine), so imports
load cached bytecode as an installed program does instead of compiling ~1,400 modules each
time; one unmeasured warm-up run of each writes the caches first.

Wall-clock, CPU (user + system) and peak RSS come from ``os.wait4`` of each child. The run's
own child, the recorder process that stores its events (``orchestrator.store.recorder``), is
waited for by the run, so its CPU is in the figure and its RSS in the peak (the larger of the
two processes'; Linux's ``wait4``). Figures are medians over ``--repeats``. CPU/wall below
0.9 means other load shared the CPUs and the wall figures are inflated; CPU is the figure
that carries across a loaded machine. Usage::

    .venv/bin/python benchmarks/run_process.py [--repeats 5] [--other /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._daemon_report import RESULTS
from benchmarks._plans import spread_plan, write_plan

ROOT = Path(__file__).resolve().parent.parent

FLOOR = """
import anyio
CAPS = {"cpu": 2, "io": 3, "network": 2, "light": None}
CLASSES = ("cpu", "io", "network", "light")
async def main():
    limiters = {c: anyio.CapacityLimiter(n) for c, n in CAPS.items() if n is not None}
    async def one(cls):
        limiter = limiters.get(cls)
        if limiter is None:
            await anyio.sleep(0)
            return
        async with limiter:
            await anyio.sleep(0)
    async with anyio.create_task_group() as tg:
        for s in range(4):
            for i in range(2500):
                tg.start_soon(one, CLASSES[(s + i) % 4])
anyio.run(main)
"""


def _measure(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read().decode() if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:4]} failed: {stderr[-2000:]}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def _run(root: Path, plan: Path, work: Path, n: int) -> dict[str, float]:
    state = work / f"state-{root.name}-{n}"
    python = str(root / ".venv" / "bin" / "python")
    env = {**_child_env(), "PYTHONPATH": str(root)}
    env.pop("ORCH_REDIS_URL", None)
    argv = [python, "-m", "orchestrator", "run", "--plain", "--state-dir", str(state), str(plan)]
    return _measure(argv, work, env)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _median(samples: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(s[key] for s in samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--other", type=Path, default=None, help="another checkout to compare")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        work = Path(tmp)
        plan = write_plan(
            spread_plan("noop10k", streams=4, steps_per_stream=2500, seconds=0),
            work / "noop10k.json",
        )
        floor_argv = [str(ROOT / ".venv" / "bin" / "python"), "-c", FLOOR]
        samples: dict[str, list[dict[str, float]]] = {"this": [], "floor": []}
        if args.other is not None:
            samples["other"] = []
        _run(ROOT, plan, work, -1)  # warm-up: bytecode caches written, not measured
        if args.other is not None:
            _run(args.other.resolve(), plan, work, -1)
        for n in range(args.repeats):
            samples["floor"].append(_measure(floor_argv, work, _child_env()))
            samples["this"].append(_run(ROOT, plan, work, n))
            if args.other is not None:
                samples["other"].append(_run(args.other.resolve(), plan, work, n))
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        # Not under "other": that key holds the other checkout's figures (the table reads them).
        "other_root": str(args.other) if args.other else None,
    }
    for name, runs in samples.items():
        report[name] = {
            "wall_s": _median(runs, "wall_s"),
            "cpu_s": _median(runs, "cpu_s"),
            "rss_mib": _median(runs, "rss_mib"),
            "samples": runs,
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "run_process.json").write_text(json.dumps(report, indent=2))
    print(
        f"load average {report['load_average']}, {report['cpus']} CPUs, medians of {args.repeats}"
    )
    print(f"{'':28} {'wall s':>8} {'CPU s':>8} {'CPU/wall':>9} {'RSS MiB':>8} {'µs/step CPU':>12}")
    for name, label in (
        ("this", "orchestrator run (this)"),
        ("other", f"orchestrator run ({args.other})"),
        ("floor", "bare anyio process"),
    ):
        r = report.get(name)
        if not isinstance(r, dict):
            continue
        print(
            f"{label[:28]:28} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} "
            f"{r['cpu_s'] / r['wall_s']:9.2f} {r['rss_mib']:8.1f} {r['cpu_s'] / 10_000 * 1e6:12.0f}"
        )


if __name__ == "__main__":
    main()
