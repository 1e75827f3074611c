"""Plan generators and plan arithmetic shared by the benchmarks.

Plans are built as plain dicts (what a user writes), dumped to YAML or JSON files and loaded
back with :func:`streams.load_plan`, so every benchmark goes through the real loader.
:func:`lower_bound` and :func:`simulate_greedy` read a loaded :class:`~streams.Plan`: the
figures a makespan is compared with come from the plan itself, not from the generator.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agents.actions.sleep import SleepParams
from orchestrator.coordination.base import PRIORITY_LEVELS
from streams.model import Plan, StepSpec
from streams.validation import effective_needs

__all__ = [
    "AGENT_OF_CLASS",
    "CAPS",
    "CLASSES",
    "LowerBound",
    "critical_path",
    "lower_bound",
    "makespan_plan",
    "simulate_greedy",
    "spread_plan",
    "step_seconds",
    "tasks_in_plan_order",
    "write_plan",
]

#: The resource classes of every generated plan, in rotation order, and their caps.
CLASSES: tuple[str, ...] = ("cpu", "io", "network", "light")
CAPS: Mapping[str, int | None] = {"cpu": 2, "io": 3, "network": 2, "light": None}
AGENT_OF_CLASS: Mapping[str, str] = {"cpu": "perf", "io": "sec", "network": "net", "light": "docs"}


def _agents(extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    pairs = {**{agent: cls for cls, agent in AGENT_OF_CLASS.items()}, **(extra or {})}
    return {agent: {"class": cls, "can": ["sleep"]} for agent, cls in pairs.items()}


def spread_plan(
    name: str, *, streams: int, steps_per_stream: int, seconds: float
) -> dict[str, Any]:
    """``streams`` x ``steps_per_stream`` independent ``sleep`` steps (``needs: []``).

    Step ``i`` of stream ``s`` runs in class ``CLASSES[(s + i) % 4]`` under caps 2/3/2/
    unlimited: the peer benchmark's shape, and with ``seconds=0`` the dispatch benchmark's.
    """
    team = list(AGENT_OF_CLASS.values())
    return {
        "version": 1,
        "plan": name,
        "caps": dict(CAPS),
        "agents": _agents(),
        "streams": [
            {
                "id": f"stream-{s}",
                "team": team,
                "steps": [
                    {
                        "id": f"step-{i:05d}",
                        "agent": AGENT_OF_CLASS[CLASSES[(s + i) % len(CLASSES)]],
                        "action": "sleep",
                        "with": {"seconds": seconds},
                        "needs": [],
                    }
                    for i in range(steps_per_stream)
                ],
            }
            for s in range(streams)
        ],
    }


def _step(
    step_id: str,
    agent: str,
    ms: int,
    *,
    locks: tuple[str, ...] = (),
    needs: list[str] | None = None,
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id,
        "agent": agent,
        "action": "sleep",
        "with": {"seconds": f"{ms}ms"},
    }
    if locks:
        step["locks"] = list(locks)
    if needs is not None:
        step["needs"] = needs
    return step


def makespan_plan() -> dict[str, Any]:
    """A phase-2-like plan of 30 ``sleep`` steps (30-120 ms) in 8 streams.

    Caps 2/3/2/unlimited; steps lock ``redis`` and ``database`` (some both); chains by the
    default ``needs``, fan-in by explicit ``needs``, and ``depends_on`` between streams.
    Written once as a plausible plan, not tuned to any result.
    """
    db, rd = ("database",), ("redis",)
    both = ("database", "redis")
    team = ["perf", "build", "sec", "dba", "net", "docs"]

    def stream(
        sid: str,
        steps: list[dict[str, Any]],
        *,
        priority: str = "medium",
        depends_on: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        return {
            "id": sid,
            "priority": priority,
            "team": team,
            "depends_on": list(depends_on),
            "steps": steps,
        }

    return {
        "version": 1,
        "plan": "makespan",
        "caps": dict(CAPS),
        "resources": ["redis", "database"],
        "agents": _agents({"build": "cpu", "dba": "io"}),
        "streams": [
            stream(
                "database",
                [
                    _step("schema", "dba", 60, locks=db),
                    _step("migrate", "dba", 80, locks=db),
                    _step("index", "dba", 60, locks=db),
                    _step("db-bench", "perf", 80),
                ],
                priority="high",
            ),
            stream(
                "cache",
                [
                    _step("redis-config", "sec", 40, locks=rd),
                    _step("redis-warm", "net", 60, locks=rd),
                    _step("cache-bench", "perf", 80),
                ],
                priority="high",
            ),
            stream(
                "api",
                [
                    _step("build-api", "build", 100, needs=[]),
                    _step("api-docs", "docs", 30, needs=[]),
                    _step("api-tests", "build", 80, needs=["build-api"]),
                    _step("api-smoke", "net", 60, locks=both, needs=["api-tests"]),
                ],
            ),
            stream(
                "security",
                [
                    _step("scan-deps", "perf", 60, needs=[]),
                    _step("scan-image", "build", 60, needs=[]),
                    _step("audit-db", "sec", 50, locks=db, needs=[]),
                    _step("audit-redis", "sec", 30, locks=rd, needs=[]),
                    _step(
                        "sec-report",
                        "docs",
                        20,
                        needs=["scan-deps", "scan-image", "audit-db", "audit-redis"],
                    ),
                ],
            ),
            stream(
                "network",
                [
                    _step("tls-rotate", "net", 50, needs=[]),
                    _step("dns-check", "net", 40, needs=[]),
                    _step("cdn-purge", "net", 60, needs=[]),
                    _step("latency-bench", "perf", 60, needs=["tls-rotate", "dns-check"]),
                ],
                priority="low",
            ),
            stream(
                "logs",
                [
                    _step("ship-logs", "sec", 70),
                    _step("rotate-logs", "sec", 40),
                    _step("index-logs", "dba", 50, locks=db),
                ],
                priority="low",
            ),
            stream(
                "integration",
                [
                    _step("e2e-setup", "dba", 40, locks=both),
                    _step("e2e", "build", 120),
                    _step("e2e-teardown", "dba", 40, locks=both),
                ],
                priority="high",
                depends_on=("database", "cache"),
            ),
            stream(
                "release",
                [
                    _step("changelog", "docs", 10),
                    _step("package", "build", 80),
                    _step("publish", "net", 60, locks=rd),
                    _step("announce", "docs", 10),
                ],
                priority="critical",
                depends_on=("api", "security", "integration"),
            ),
        ],
    }


def write_plan(data: Mapping[str, Any], path: Path) -> Path:
    """Dump ``data`` to ``path`` as YAML or JSON (by its suffix); return ``path``."""
    if path.suffix == ".json":
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    else:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        path.write_text(yaml.dump(data, Dumper=dumper, sort_keys=False), encoding="utf-8")
    return path


# -- plan arithmetic -------------------------------------------------------------------------


def step_seconds(step: StepSpec) -> float:
    """How long a ``sleep`` step sleeps, parsed by the action's own parameter model."""
    return float(SleepParams.model_validate(step.with_).seconds)


def tasks_in_plan_order(plan: Plan) -> list[tuple[str, float]]:
    """(resource class, seconds) of every step, in the order the scheduler queues them."""
    return [
        (plan.agent_class(step.agent), step_seconds(step))
        for stream in plan.streams
        for step in stream.steps
    ]


@dataclass(frozen=True, slots=True)
class LowerBound:
    """No schedule of the plan can finish sooner than ``bound_s``: the largest of the
    critical path, each capped class's work divided by its cap, and each lock's work."""

    critical_path_s: float
    class_s: Mapping[str, float]
    lock_s: Mapping[str, float]

    @property
    def bound_s(self) -> float:
        return max(self.critical_path_s, *self.class_s.values(), *self.lock_s.values())

    @property
    def binding(self) -> str:
        """Which term sets the bound: ``critical path``, ``class cpu`` or ``lock redis``."""
        terms = {
            "critical path": self.critical_path_s,
            **{f"class {c}": v for c, v in self.class_s.items()},
            **{f"lock {r}": v for r, v in self.lock_s.items()},
        }
        return max(terms, key=lambda k: terms[k])


def lower_bound(plan: Plan) -> LowerBound:
    """Compute :class:`LowerBound` from ``plan`` (``sleep`` steps only)."""
    class_work: dict[str, float] = {}
    lock_work: dict[str, float] = {}
    for stream in plan.streams:
        for step in stream.steps:
            seconds = step_seconds(step)
            cls = plan.agent_class(step.agent)
            class_work[cls] = class_work.get(cls, 0.0) + seconds
            for lock in step.locks:
                lock_work[lock] = lock_work.get(lock, 0.0) + seconds
    class_s = {
        cls: work / cap for cls, work in class_work.items() if (cap := plan.caps[cls]) is not None
    }
    return LowerBound(_critical_path_s(plan), class_s, lock_work)


def critical_path(plan: Plan) -> tuple[float, list[tuple[str, str]]]:
    """The longest chain of steps through ``needs`` and ``depends_on`` (unlimited slots, no
    locks): its length in seconds and its (stream, step) pairs, first step first."""
    by_id = {stream.id: stream for stream in plan.streams}
    steps = {(stream.id, step.id): step for stream in plan.streams for step in stream.steps}
    needs = {stream.id: effective_needs(stream.steps) for stream in plan.streams}
    end: dict[tuple[str, str], float] = {}
    before: dict[tuple[str, str], tuple[str, str] | None] = {}

    def last_of(sid: str) -> tuple[str, str]:
        return max(((sid, step.id) for step in by_id[sid].steps), key=finish)

    def finish(key: tuple[str, str]) -> float:
        if key not in end:
            sid, step_id = key
            earlier = [(sid, n) for n in needs[sid][step_id]]
            earlier += [last_of(dep) for dep in by_id[sid].depends_on]
            previous = max(earlier, key=finish, default=None)
            before[key] = previous
            start = finish(previous) if previous is not None else 0.0
            end[key] = start + step_seconds(steps[key])
        return end[key]

    last = max((last_of(stream.id) for stream in plan.streams), key=finish)
    chain: list[tuple[str, str]] = []
    cursor: tuple[str, str] | None = last
    while cursor is not None:
        chain.append(cursor)
        cursor = before[cursor]
    return end[last], chain[::-1]


def _critical_path_s(plan: Plan) -> float:
    return critical_path(plan)[0]


def simulate_greedy(plan: Plan, *, aging_s: float = 30.0, handoff: bool = False) -> float:
    """Makespan of the in-process coordinator's policy with zero overhead (virtual time).

    Mirrors :class:`orchestrator.coordination.InProcessCoordinator` for runs shorter than
    its starvation threshold: a step queues when its stream has started and its ``needs``
    succeeded, with key ``queued_at + priority_level * aging_s``; every queue and release
    grants, in key order, each waiter whose class slot and locks are all free. Separates
    the policy's distance from the lower bound from the runtime's overhead.

    As in the scheduler, a finished step releases first and its successors queue after that
    release's grants. ``handoff=True`` simulates the opposite order (successors queue while
    the finished step still holds its slot and locks, then it releases), so a released lock
    goes to the waiter with the best key, successors included.
    """
    needs = {s.id: effective_needs(s.steps) for s in plan.streams}
    dependents: dict[tuple[str, str], list[str]] = {}
    waiting: dict[tuple[str, str], int] = {}
    for sid, stream_needs in needs.items():
        for step_id, deps in stream_needs.items():
            waiting[(sid, step_id)] = len(deps)
            dependents.setdefault((sid, step_id), [])
            for dep in deps:
                dependents.setdefault((sid, dep), []).append(step_id)
    streams = {s.id: s for s in plan.streams}
    steps = {(s.id, step.id): step for s in plan.streams for step in s.steps}
    left = {s.id: len(s.steps) for s in plan.streams}
    deps_left = {s.id: len(s.depends_on) for s in plan.streams}
    stream_dependents: dict[str, list[str]] = {s.id: [] for s in plan.streams}
    for s in plan.streams:
        for dep in s.depends_on:
            stream_dependents[dep].append(s.id)

    seq = itertools.count()
    queue: list[tuple[float, int, tuple[str, str]]] = []
    running: list[tuple[float, int, tuple[str, str]]] = []
    in_use: Counter[str] = Counter()
    locked: set[str] = set()

    def dispatch(now: float) -> None:
        for item in list(queue):
            step = steps[item[2]]
            cls = plan.agent_class(step.agent)
            cap = plan.caps[cls]
            if (cap is not None and in_use[cls] >= cap) or locked.intersection(step.locks):
                continue
            queue.remove(item)
            in_use[cls] += 1
            locked.update(step.locks)
            heapq.heappush(running, (now + step_seconds(step), next(seq), item[2]))

    def enqueue(key: tuple[str, str], now: float) -> None:
        level = PRIORITY_LEVELS[streams[key[0]].priority]
        bisect.insort(queue, (now + level * aging_s, next(seq), key))
        dispatch(now)

    def start_stream(sid: str, now: float) -> None:
        for step in streams[sid].steps:
            if waiting[(sid, step.id)] == 0:
                enqueue((sid, step.id), now)

    def queue_successors(key: tuple[str, str], now: float) -> None:
        for child in dependents[key]:
            waiting[(key[0], child)] -= 1
            if waiting[(key[0], child)] == 0:
                enqueue((key[0], child), now)
        left[key[0]] -= 1
        if left[key[0]] == 0:
            for sid in stream_dependents[key[0]]:
                deps_left[sid] -= 1
                if deps_left[sid] == 0:
                    start_stream(sid, now)

    for s in plan.streams:
        if not s.depends_on:
            start_stream(s.id, 0.0)
    now = 0.0
    while running:
        now, _, key = heapq.heappop(running)
        step = steps[key]
        if handoff:
            queue_successors(key, now)
        in_use[plan.agent_class(step.agent)] -= 1
        locked.difference_update(step.locks)
        dispatch(now)
        if not handoff:
            queue_successors(key, now)
    if queue:
        raise RuntimeError("simulation stalled with steps still queued")
    return now
