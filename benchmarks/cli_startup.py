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
read as ``figure - interpreter``, and for ``validate`` two more floors, shown beside its own:
``import pydantic`` alone (an earlier floor, which imports none of what a model needs:
pydantic 2 loads ``BaseModel`` on first access), and the floor plus one one-field model
defined and validated (what pydantic's first model costs any program: its fields, types and
plugin loader, ``importlib.metadata``). Commands and floors alternate, ``--repeat`` times
each; medians of wall time (spawn to exit) and of CPU time (user + system, from
``os.wait4``: less inflated by other load on a shared machine) are reported.
``--baseline REF`` also runs the commands of another commit (``git archive`` into a
temporary directory) in the same rounds.

Children run without ``PYTHONDONTWRITEBYTECODE`` (set on the shared machine), after one
unmeasured warm-up run of each: this project's modules load from ``__pycache__`` as an
installed program's do, as the floors' libraries (compiled at install) always did. With
that variable set, every measured ``validate`` compiled some 40 of this project's modules
from source (~25 ms of its figure) and its floor compiled none.

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--repeat 15] [--baseline main] [--instructions]

``--instructions`` also counts the instructions of ``validate``'s processes (each once,
under valgrind's callgrind): a figure a loaded machine does not move.

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

from benchmarks._baseline import baseline_checkout, child_env, warm_up
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

#: command -> other floors, measured and shown beside the command's own: name -> code.
OTHER_FLOORS: dict[str, dict[str, str]] = {
    "validate": {
        "earlier floor": "import click, pydantic, yaml, anyio, structlog",
        "floor + first model": COMMANDS["validate"][1]
        + "\nclass M(BaseModel):\n    x: int\nM(x=1)",
    }
}


def spawn(argv: Sequence[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Seconds from spawn to exit of ``argv``, and the CPU seconds (user + system) it used;
    raises if it fails."""
    began = time.perf_counter()
    child = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert child.stderr is not None
    err = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stderr.close()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {child.returncode}: {err[-2000:]!r}")
    return elapsed, usage.ru_utime + usage.ru_stime


def _runs(python: str, baseline: Path | None) -> dict[str, tuple[list[str], Path]]:
    """Every measured process, in the order of a round: name -> (argv, cwd)."""
    runs: dict[str, tuple[list[str], Path]] = {"interpreter": ([python, "-c", "pass"], ROOT)}
    for name, (args, floor) in COMMANDS.items():
        runs[name] = ([python, "-m", "orchestrator", *args], ROOT)
        runs[f"{name} floor"] = ([python, "-c", floor], ROOT)
        for label, code in OTHER_FLOORS.get(name, {}).items():
            runs[f"{name} {label}"] = ([python, "-c", code], ROOT)
        if baseline is not None:
            # cwd first on sys.path: the baseline's packages shadow the editable ones
            runs[f"{name} baseline"] = ([python, "-m", "orchestrator", *args], baseline)
    return runs


def bench(repeat: int, baseline: Path | None) -> dict[str, Any]:
    runs = _runs(sys.executable, baseline)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    with tempfile.TemporaryDirectory(prefix="orch-clibench-") as tmp:
        daemon = DaemonUnderTest(Path(tmp), store=None)
        daemon.start()
        try:
            env = child_env(daemon.env)
            for argv, cwd in runs.values():
                warm_up(argv, env, cwd)
            for _ in range(repeat):
                for name, (argv, cwd) in runs.items():
                    elapsed, used = spawn(argv, env, cwd)
                    wall[name].append(elapsed)
                    cpu[name].append(used)
        finally:
            daemon.stop()
    medians = {k: statistics.median(v) for k, v in wall.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
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
            "cpu_ms": round(cpu_medians[name] * 1e3, 1),
            "floor_cpu_ms": round(cpu_medians[f"{name} floor"] * 1e3, 1),
            "cpu_ratio": round(cpu_medians[name] / cpu_medians[f"{name} floor"], 2),
            "floor_imports": COMMANDS[name][1],
            "other_floors": [
                {
                    "floor": label,
                    "code": code,
                    "median_ms": round(medians[f"{name} {label}"] * 1e3, 1),
                    "ratio": round(command / medians[f"{name} {label}"], 2),
                    "cpu_ms": round(cpu_medians[f"{name} {label}"] * 1e3, 1),
                }
                for label, code in OTHER_FLOORS.get(name, {}).items()
            ],
        }
        if baseline is not None:
            row["baseline_ms"] = round(medians[f"{name} baseline"] * 1e3, 1)
            row["baseline_ratio"] = round(medians[f"{name} baseline"] / floor, 2)
            row["baseline_cpu_ms"] = round(cpu_medians[f"{name} baseline"] * 1e3, 1)
        rows.append(row)
    return {
        "repeat": repeat,
        "interpreter_ms": round(interpreter * 1e3, 1),
        "rows": rows,
        "samples_ms": {k: [round(s * 1e3, 1) for s in v] for k, v in wall.items()},
        "cpu_samples_ms": {k: [round(s * 1e3, 1) for s in v] for k, v in cpu.items()},
    }


def render(result: dict[str, Any]) -> str:
    has_base = "baseline_ms" in result["rows"][0]
    head = (
        "| command | median ms | floor ms | ratio | ratio less interpreter | CPU ms "
        "| floor CPU ms | CPU ratio |"
    )
    head += " baseline ms | baseline ratio | baseline CPU ms |" if has_base else ""
    lines = [head, "|" + "---|" * head.count(" |")]
    for r in result["rows"]:
        line = (
            f"| `{r['command']}` | {r['median_ms']} | {r['floor_ms']} | {r['ratio']} | "
            f"{r['ratio_less_interpreter']} | {r['cpu_ms']} | {r['floor_cpu_ms']} | "
            f"{r['cpu_ratio']} |"
        )
        if has_base:
            line += f" {r['baseline_ms']} | {r['baseline_ratio']} | {r['baseline_cpu_ms']} |"
        lines.append(line)
    lines.extend(
        f"\n`{r['command']}` against its {o['floor']} ({o['code']!r}): {o['median_ms']} ms "
        f"(CPU {o['cpu_ms']} ms), ratio {o['ratio']}"
        for r in result["rows"]
        for o in r["other_floors"]
    )
    load = result["meta"]["load_avg_1min"]
    lines.append(
        f"\ninterpreter alone: {result['interpreter_ms']} ms; medians of {result['repeat']}; "
        f"1-minute load average {load[0]} -> {load[1]}"
    )
    return "\n".join(lines)


def instructions(baseline: Path | None) -> dict[str, int]:
    """Instructions executed by ``validate``'s processes (its floors, its baseline), each
    counted once under valgrind's callgrind: the same on a loaded machine as on a quiet one,
    where wall and CPU times are not (Python runs some 50 x slower under it)."""
    runs = {
        name: run
        for name, run in _runs(sys.executable, baseline).items()
        if name == "validate" or name.startswith("validate ")
    }
    env = child_env()
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="orch-clicount-") as tmp:
        for name, (argv, cwd) in runs.items():
            warm_up(argv, env, cwd)
            out = Path(tmp) / "callgrind.out"
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                env=env,
                cwd=cwd,
                capture_output=True,
                timeout=600,
                check=True,
            )
            summary = next(
                line for line in out.read_text().splitlines() if line.startswith("summary:")
            )
            counts[name] = int(summary.split()[1])
    return counts


def render_instructions(counts: dict[str, int]) -> str:
    floor = counts["validate floor"]
    lines = ["| process | million instructions | against the floor |", "|---|---|---|"]
    lines += [f"| {name} | {n / 1e6:,.1f} | {n / floor:.2f} |" for name, n in counts.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--baseline", default=None, help="also run this commit's commands")
    parser.add_argument("--output", type=Path, default=RESULTS / "cli_startup.json")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count validate's instructions and its floors' under valgrind (minutes)",
    )
    args = parser.parse_args(argv)
    load = [round(os.getloadavg()[0], 2)]
    with baseline_checkout(args.baseline) as baseline:
        result = bench(args.repeat, baseline)
        if args.instructions:
            result["instructions"] = instructions(baseline)
    load.append(round(os.getloadavg()[0], 2))
    result["meta"] = {**machine(), "baseline": args.baseline, "load_avg_1min": load}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(render(result))
    if "instructions" in result:
        print("\n" + render_instructions(result["instructions"]))
    print(f"\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
