"""CLI start-up: each command's whole process against the bare dependencies it needs.

A command should cost little more than importing the libraries it cannot do without. Each
figure is the wall time of a fresh process, from spawn to exit (interpreter start, imports,
the work, teardown), measured in the same run as its floor, a process that only imports
those libraries (``python -c "import click, ..."``):

- ``--version``: print the version; floor: click and importlib.metadata;
- ``validate``: load and check ``examples/phase2.yaml``; floor: click, pydantic's
  ``BaseModel``, yaml, anyio and structlog (which imports rich). ``import pydantic`` alone
  imports none of what a model needs (pydantic 2 loads ``BaseModel`` on first access), so
  that earlier floor is measured too and shown beside it;
- ``status``: ``runs.list`` from a real daemon on a private socket, printed as a table;
  floor: click, anyio, orjson, pydantic_settings, structlog and rich's console and table.

Also ``python -c pass`` (the interpreter alone), so the import part of each figure can be
read as ``figure - interpreter``. Commands and floors alternate, ``--repeat`` times each;
medians are reported (the machine is shared). ``--baseline REF`` also runs the commands of
another commit (``git archive`` into a temporary directory) in the same rounds.

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--repeat 15] [--baseline main]

Prints a table and writes JSON to ``benchmarks/results/cli_startup.json``.
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._daemon_client import DaemonUnderTest
from benchmarks._daemon_report import RESULTS, machine

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "phase2.yaml"

#: command -> (its arguments, the imports of its floor)
COMMANDS: dict[str, tuple[list[str], str]] = {
    "--version": (["--version"], "import click, importlib.metadata"),
    "validate": (
        ["validate", str(EXAMPLE)],
        "import click, yaml, anyio, structlog; from pydantic import BaseModel",
    ),
    "status": (
        ["status"],
        "import click, anyio, orjson, pydantic_settings, structlog, rich.console, rich.table",
    ),
}

#: command -> an earlier floor, measured and shown beside the command's own.
EARLIER_FLOORS: dict[str, str] = {"validate": "import click, pydantic, yaml, anyio, structlog"}


def wall_s(argv: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from spawn to exit of ``argv``; raises if it fails."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return elapsed


def bench(repeat: int, baseline: Path | None) -> dict[str, Any]:
    python = sys.executable
    samples: dict[str, list[float]] = {"interpreter": []}
    for name in COMMANDS:
        samples[name] = []
        samples[f"{name} floor"] = []
        if name in EARLIER_FLOORS:
            samples[f"{name} earlier floor"] = []
        if baseline is not None:
            samples[f"{name} baseline"] = []
    with tempfile.TemporaryDirectory(prefix="orch-clibench-") as tmp:
        daemon = DaemonUnderTest(Path(tmp), store=None)
        daemon.start()
        try:
            env = dict(daemon.env)
            for _ in range(repeat):
                samples["interpreter"].append(wall_s([python, "-c", "pass"], env, ROOT))
                for name, (args, floor) in COMMANDS.items():
                    samples[name].append(wall_s([python, "-m", "orchestrator", *args], env, ROOT))
                    samples[f"{name} floor"].append(wall_s([python, "-c", floor], env, ROOT))
                    if name in EARLIER_FLOORS:
                        argv = [python, "-c", EARLIER_FLOORS[name]]
                        samples[f"{name} earlier floor"].append(wall_s(argv, env, ROOT))
                    if baseline is not None:
                        # cwd first on sys.path: the baseline's packages shadow the editable ones
                        base = [python, "-m", "orchestrator", *args]
                        samples[f"{name} baseline"].append(wall_s(base, env, baseline))
        finally:
            daemon.stop()
    medians = {k: statistics.median(v) for k, v in samples.items()}
    interpreter = medians["interpreter"]
    rows = []
    for name in COMMANDS:
        command, floor = medians[name], medians[f"{name} floor"]
        row: dict[str, Any] = {
            "command": name,
            "median_ms": round(command * 1e3, 1),
            "floor_ms": round(floor * 1e3, 1),
            "ratio": round(command / floor, 2),
            "ratio_less_interpreter": round(
                (command - interpreter) / max(floor - interpreter, 1e-9), 2
            ),
            "floor_imports": COMMANDS[name][1],
        }
        if name in EARLIER_FLOORS:
            earlier_s = medians[f"{name} earlier floor"]
            row["earlier_floor_ms"] = round(earlier_s * 1e3, 1)
            row["earlier_floor_ratio"] = round(command / earlier_s, 2)
            row["earlier_floor_imports"] = EARLIER_FLOORS[name]
        if baseline is not None:
            row["baseline_ms"] = round(medians[f"{name} baseline"] * 1e3, 1)
            row["baseline_ratio"] = round(medians[f"{name} baseline"] / floor, 2)
        rows.append(row)
    return {
        "repeat": repeat,
        "interpreter_ms": round(interpreter * 1e3, 1),
        "rows": rows,
        "samples_ms": {k: [round(s * 1e3, 1) for s in v] for k, v in samples.items()},
    }


def render(result: dict[str, Any]) -> str:
    has_base = "baseline_ms" in result["rows"][0]
    head = "| command | median ms | floor ms | ratio | ratio less interpreter |"
    head += " baseline ms | baseline ratio |" if has_base else ""
    lines = [head, "|" + "---|" * head.count(" |")]
    for r in result["rows"]:
        line = (
            f"| `{r['command']}` | {r['median_ms']} | {r['floor_ms']} | {r['ratio']} | "
            f"{r['ratio_less_interpreter']} |"
        )
        line += f" {r['baseline_ms']} | {r['baseline_ratio']} |" if has_base else ""
        lines.append(line)
    lines.extend(
        f"\n`{r['command']}` against its earlier floor ({r['earlier_floor_imports']}): "
        f"{r['earlier_floor_ms']} ms, ratio {r['earlier_floor_ratio']}"
        for r in result["rows"]
        if "earlier_floor_ms" in r
    )
    lines.append(
        f"\ninterpreter alone: {result['interpreter_ms']} ms; medians of {result['repeat']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--baseline", default=None, help="also run this commit's commands")
    parser.add_argument("--output", type=Path, default=RESULTS / "cli_startup.json")
    args = parser.parse_args(argv)
    load = [round(os.getloadavg()[0], 2)]
    with tempfile.TemporaryDirectory(prefix="orch-clibase-") as base:
        baseline = None
        if args.baseline:
            archive = subprocess.run(
                ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", base], input=archive, check=True)
            baseline = Path(base)
        result = bench(args.repeat, baseline)
    load.append(round(os.getloadavg()[0], 2))
    result["meta"] = {**machine(), "baseline": args.baseline, "load_avg_1min": load}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
