"""Instructions redis-server executes per coordination step, counted by callgrind.

Wall-clock figures of the Redis backend swing with the machine's load (the PING pair of
``locks.py`` ranged 140-1,000 us on this shared machine); the instructions Redis runs for a
script call do not. This runs a redis-server under ``valgrind --tool=callgrind``, sends a
fixed pipeline of script calls for each scenario, and prints the instructions per step
(counted only while the measured pipeline runs), for this checkout and, with
``--baseline REF``, for a git revision's scripts in the same run:

- ``lock``: an uncontended acquire + release of one lock (class without a cap);
- ``class``: the same for a slot of a class with cap 2, no lock;
- ``contended``: cap 2, two holders and two waiters; a step releases the oldest holder
  (which grants a waiter) and queues a new waiter. Scripts with batched operations
  (``ops.lua``) are measured sending both as one call (``contended``) and as two
  (``contended-2``);
- floors: ``ping`` (a PING pair) and ``bare`` (two EVALSHAs of a script returning at once,
  with the arguments of ``lock``).

Usage: ``.venv/bin/python benchmarks/redis_instructions.py [--baseline REF] [--steps N]``.
Needs valgrind; takes about 20 s per scenario and revision.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("ping", "bare", "lock", "class", "contended", "contended-2")
_READ_SCRIPTS = (
    "import json, orchestrator.coordination.redis._scripts as s; "
    "print(json.dumps({k: getattr(s, k) for k in ('OPS', 'ACQUIRE', 'DROP') if hasattr(s, k)}))"
)


def scripts_of(tree: Path) -> dict[str, str]:
    """The acquire/release script texts of a checkout: OPS, or ACQUIRE and DROP (older)."""
    out = subprocess.run(
        [sys.executable, "-c", _READ_SCRIPTS], cwd=tree, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


class Client:
    """Sends acquire and release operations the way a revision's scripts take them."""

    def __init__(self, conn: redis.Redis, scripts: dict[str, str]) -> None:
        self.batched = "OPS" in scripts
        self.sha = {name: conn.script_load(text) for name, text in scripts.items()}

    @staticmethod
    def head(ns: str) -> list[str]:
        return [prefix(ns), "bench-process", "50000000", "120000000"]

    @staticmethod
    def acquire(h: str, cls: str, cap: int, locks: list[str]) -> list[str]:
        fragment = json.dumps({"c": cls, "l": locks, "p": "bench-process", "lab": {}})
        return ["acquire", str(len(locks)), h, "g-" + h, cls, str(cap), "2", "0", "30000000",
                fragment, *locks]  # fmt: skip

    @staticmethod
    def release(h: str, cls: str, locks: list[str]) -> list[str]:
        return ["release", h, "g-" + h, cls, str(len(locks)), *locks]

    def send(self, pipe: Any, ns: str, ops: list[list[str]], together: bool) -> None:
        key = prefix(ns) + "route"
        if self.batched and together:
            args = [a for op in ops for a in op]
            pipe.evalsha(self.sha["OPS"], 1, key, *self.head(ns), *args)
            return
        for op in ops:
            if self.batched:
                pipe.evalsha(self.sha["OPS"], 1, key, *self.head(ns), *op)
            elif op[0] == "acquire":
                pipe.evalsha(self.sha["ACQUIRE"], 1, key, *self.head(ns), *op[2:])
            else:
                pipe.evalsha(self.sha["DROP"], 1, key, *self.head(ns), "release", *op[1:])


def prefix(ns: str) -> str:
    return "{" + ns + "}:"


def instrument(pid: int, on: str) -> None:
    subprocess.run(["callgrind_control", "-i", on, str(pid)], capture_output=True, check=True)


def pipeline(conn: redis.Redis, client: Client, scenario: str, ns: str, steps: int) -> Any:
    pipe = conn.pipeline(transaction=False)
    if scenario == "ping":
        for _ in range(2 * steps):
            pipe.ping()
    elif scenario == "bare":
        sha = conn.script_load("return 'granted'")
        for i in range(steps):
            for op in (
                client.acquire(f"h{i}", "bench", -1, ["l"]),
                client.release(f"h{i}", "bench", ["l"]),
            ):
                pipe.evalsha(sha, 1, prefix(ns) + "route", *client.head(ns), *op)
    elif scenario in ("lock", "class"):
        cls, cap, locks = ("bench", -1, ["l"]) if scenario == "lock" else ("cpu", 2, [])
        for i in range(steps):
            client.send(pipe, ns, [client.acquire(f"h{i}", cls, cap, locks)], False)
            client.send(pipe, ns, [client.release(f"h{i}", cls, locks)], False)
    else:
        for i in range(4):
            client.send(pipe, ns, [client.acquire(f"h{i}", "cpu", 2, [])], False)
        pipe.execute()
        for i in range(steps):
            ops = [client.release(f"h{i}", "cpu", []), client.acquire(f"h{i + 4}", "cpu", 2, [])]
            client.send(pipe, ns, ops, scenario == "contended")
    return pipe


def count(scripts: dict[str, str], scenario: str, steps: int) -> int:
    """Instructions redis-server ran for ``steps`` steps of ``scenario``."""
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        out = f"{tmp}/callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             "--instr-atstart=no", "redis-server", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        conn = redis.Redis(port=port, decode_responses=True)
        try:
            for _ in range(600):
                try:
                    conn.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            client = Client(conn, scripts)
            for ns in ("warm", "run"):  # grants allowed at once (see the prelude's "safe")
                conn.set(prefix(ns) + "safe", "0")
            pipeline(conn, client, scenario, "warm", steps).execute()  # scripts compiled
            pipe = pipeline(conn, client, scenario, "run", steps)
            instrument(server.pid, "on")
            replies = pipe.execute()
            instrument(server.pid, "off")
            if scenario not in ("ping", "bare"):
                expected = {"lock": "granted", "class": "granted"}.get(scenario, "waiting")
                text = json.dumps(replies)
                if expected not in text or "dup" in text:
                    raise RuntimeError(f"unexpected replies: {replies[:4]}")
            conn.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the shutdown closes the connection
        finally:
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        totals = "".join(Path(p).read_text() for p in glob.glob(out + "*"))
        return sum(int(n) for n in re.findall(r"^totals: (\d+)", totals, re.M))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a git revision to measure in the same run")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    revisions = {"this checkout": scripts_of(ROOT)}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(
                ["git", "archive", args.baseline], cwd=ROOT, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            revisions[args.baseline] = scripts_of(Path(tmp))
    print(f"{'scenario':<14}" + "".join(f"{name:>18}" for name in revisions) + "   Ir per step")
    for scenario in args.scenarios:
        row = []
        for scripts in revisions.values():
            if scenario == "contended-2" and "OPS" not in scripts:
                row.append("-")  # no batches: "contended" is already two calls
                continue
            row.append(f"{count(scripts, scenario, args.steps) / args.steps / 1000:.1f}k")
        print(f"{scenario:<14}" + "".join(f"{cell:>18}" for cell in row), flush=True)


if __name__ == "__main__":
    main()
