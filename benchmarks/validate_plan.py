"""Validation of a 10,000-step plan: ``agents.plans.load_plan`` in fresh processes.

Each sample is one child process that loads the plan once after a warm-up load of a small
plan (so imports and model building are not counted) and reports the CPU time of the load
(``resource.getrusage``: user + system, which a loaded machine inflates far less than wall
time) and its wall time. Rows, alternating in every round:

- this checkout, the plan as YAML (0.9 MiB, written by ``yaml.safe_dump`` as
  ``benchmarks/_plans.py`` writes every benchmark plan) and as JSON;
- a peer: ``yaml.load(text, Loader=yaml.CSafeLoader)`` of the same YAML, libyaml's C
  loader building the data alone (no validation at all), with the cyclic GC paused as
  ``load_plan`` pauses it;
- with ``--baseline REF``: another commit's ``load_plan`` of the same YAML (``git archive``
  into a temporary directory, run with this virtual environment; see
  :mod:`benchmarks._baseline`).

Usage::

    .venv/bin/python benchmarks/validate_plan.py [--repeat 7] [--baseline main]

Prints a table and writes JSON to ``benchmarks/results/validate_plan.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._baseline import baseline_checkout
from benchmarks._daemon_report import RESULTS, machine
from benchmarks._plans import spread_plan, write_plan

ROOT = Path(__file__).resolve().parent.parent
STEPS = 10_000

#: Loads argv[1] once after a warm-up, prints {"cpu_s", "wall_s", "steps"} (argv[2]: "plan"
#: for load_plan, "yaml" for PyYAML's C loader alone).
CHILD = """
import json, resource, sys, time
path, mode = sys.argv[1], sys.argv[2]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
if mode == "plan":
    from agents.plans import load_plan
    load_plan(sys.argv[3])
    run = lambda: load_plan(path).total_steps()
else:
    import gc, yaml
    text = open(path, encoding="utf-8").read()
    gc.disable()  # as load_plan pauses it: cyclic GC would triple the loader's time
    run = lambda: sum(len(s["steps"]) for s in yaml.load(text, Loader=yaml.CSafeLoader)["streams"])
c, w = cpu(), time.perf_counter()
steps = run()
print(json.dumps({"cpu_s": cpu() - c, "wall_s": time.perf_counter() - w, "steps": steps}))
"""


def sample(cwd: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args} exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def bench(repeat: int, baseline: Path | None, workdir: Path) -> dict[str, Any]:
    data = spread_plan("validate", streams=4, steps_per_stream=STEPS // 4, seconds=0.0)
    yaml_path = write_plan(data, workdir / "validate.yaml")
    json_path = write_plan(data, workdir / "validate.json")
    small = write_plan(
        spread_plan("warm", streams=1, steps_per_stream=2, seconds=0.0), workdir / "warm.yaml"
    )
    rows: dict[str, tuple[Path, list[str]]] = {
        "load_plan, YAML": (ROOT, [str(yaml_path), "plan", str(small)]),
        "load_plan, JSON": (ROOT, [str(json_path), "plan", str(small)]),
        "peer: yaml.load, CSafeLoader, GC paused (no validation)": (ROOT, [str(yaml_path), "yaml"]),
    }
    if baseline is not None:
        rows["baseline load_plan, YAML"] = (baseline, [str(yaml_path), "plan", str(small)])
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    for _ in range(repeat):
        for name, (cwd, args) in rows.items():
            got = sample(cwd, *args)
            if got["steps"] != STEPS:
                raise RuntimeError(f"{name}: {got['steps']} steps, not {STEPS}")
            samples[name].append(got)
    return {
        "repeat": repeat,
        "bytes": {"yaml": yaml_path.stat().st_size, "json": json_path.stat().st_size},
        "rows": [
            {
                "what": name,
                "cpu_s": round(statistics.median(s["cpu_s"] for s in got), 3),
                "wall_s": round(statistics.median(s["wall_s"] for s in got), 3),
            }
            for name, got in samples.items()
        ],
        "samples": samples,
    }


def render(result: dict[str, Any]) -> str:
    lines = ["| what | CPU s (median) | wall s (median) |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['cpu_s']:.3f} | {r['wall_s']:.3f} |" for r in result["rows"]]
    load = result["meta"]["load_avg_1min"]
    lines.append(f"\nmedians of {result['repeat']}; 1-minute load average {load[0]} -> {load[1]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--baseline", default=None, help="also run this commit's load_plan")
    parser.add_argument("--output", type=Path, default=RESULTS / "validate_plan.json")
    args = parser.parse_args(argv)
    load = [round(os.getloadavg()[0], 2)]
    with (
        baseline_checkout(args.baseline) as baseline,
        tempfile.TemporaryDirectory(prefix="orch-validate-") as tmp,
    ):
        result = bench(args.repeat, baseline, Path(tmp))
    load.append(round(os.getloadavg()[0], 2))
    result["meta"] = {**machine(), "baseline": args.baseline, "load_avg_1min": load}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
