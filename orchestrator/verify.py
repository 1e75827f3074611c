"""``verify-log``: check from event lines alone that a run kept its promises.

Given one or more JSON-lines event logs (several processes sharing a Redis coordinator each
write their own), it groups the runs by the coordinator they shared (``coordinator`` in
``run_started``: the Redis URL without its password and the namespace; a run coordinated in
process is a group of its own), merges each group in time order and checks that:

- no resource class ever ran more steps at once than the cap of the step that started;
- no lock was ever held by two steps at once;
- fencing tokens strictly increase per resource;
- a stream started only after each stream it depends on succeeded, and a step only after each
  step it needs succeeded;
- every started step finished (unless its run never finished: a crash is reported as such).

Each step's [step_started, step_finished] interval lies inside its real hold of the slot and
locks (events are written after the grant and before the release), so overlapping intervals
prove a real violation.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.events import read_events

__all__ = ["VerifyReport", "verify_event_files", "verify_events"]


@dataclass(slots=True)
class VerifyReport:
    """What the check found: ``violations`` is empty when every promise held."""

    events: int = 0
    steps: int = 0
    runs: int = 0
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    peak: dict[str, int] = field(default_factory=dict)
    caps: dict[str, int | None] = field(default_factory=dict)
    lock_grants: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.violations

    def render(self) -> str:
        lines = [
            f"{'OK' if self.ok else 'VIOLATED'}: {self.events} events, {self.runs} run(s), "
            f"{self.steps} step attempts"
        ]
        for cls in sorted(self.peak):
            cap = self.caps.get(cls)
            lines.append(
                f"  class {cls}: peak {self.peak[cls]} / cap {'unlimited' if cap is None else cap}"
            )
        lines.extend(
            f"  lock {lock}: {self.lock_grants[lock]} grants, never shared"
            for lock in sorted(self.lock_grants)
        )
        lines.extend(f"  warning: {w}" for w in self.warnings)
        lines.extend(f"  violation: {v}" for v in self.violations)
        return "\n".join(lines)


def _key(event: dict[str, Any]) -> tuple[str, str, str, int]:
    return (
        event.get("run_id", ""),
        event.get("stream", ""),
        event.get("step", ""),
        int(event.get("attempt", 0)),
    )


def _group_of(run_started: dict[str, Any]) -> tuple[str, ...]:
    """The coordinator a run shared with others (see ``coordinator`` of ``run_started``)."""
    coordinator = run_started.get("coordinator")
    if not isinstance(coordinator, dict):
        return ("unrecorded",)  # an older log: compared with every other such run
    if coordinator.get("kind") == "redis":
        return ("redis", str(coordinator.get("where")), str(coordinator.get("namespace")))
    return ("run", str(run_started.get("run_id", "")))


def _groups(logs: Sequence[Sequence[dict[str, Any]]]) -> list[list[list[dict[str, Any]]]]:
    """``logs`` split by the coordinator their runs shared: caps, locks and fences are
    comparable within one coordinator only (independent runs each start fences at 1)."""
    run_group: dict[str, tuple[str, ...]] = {}
    for log in logs:
        for event in log:
            if event.get("event") == "run_started":
                run_group.setdefault(str(event.get("run_id", "")), _group_of(event))
    grouped: dict[tuple[str, ...], list[list[dict[str, Any]]]] = {}
    for log in logs:
        parts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for event in log:
            key = run_group.get(str(event.get("run_id", "")), ("unrecorded",))
            parts.setdefault(key, []).append(event)
        for key, part in parts.items():
            grouped.setdefault(key, []).append(part)
    return list(grouped.values())


def verify_events(logs: Sequence[Sequence[dict[str, Any]]]) -> VerifyReport:
    """Check several event sequences (each in its own file order): the runs that shared a
    coordinator are merged by timestamp and checked together, each such group alone."""
    report = VerifyReport()
    for group in _groups(logs):
        _verify_group(group, report)
    return report


def _verify_group(logs: Sequence[Sequence[dict[str, Any]]], report: VerifyReport) -> None:
    """Check one coordinator's runs, adding what is found to ``report``."""
    merged: Iterable[dict[str, Any]] = heapq.merge(*logs, key=lambda e: str(e.get("ts", "")))
    caps: dict[str, dict[str, int | None]] = {}
    depends: dict[str, dict[str, list[str]]] = {}
    needs: dict[tuple[str, str], dict[str, list[str]]] = {}
    stream_status: dict[tuple[str, str], str] = {}
    step_ok: set[tuple[str, str, str]] = set()
    active: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    class_count: Counter[str] = Counter()
    lock_holder: dict[str, tuple[str, str, str, int]] = {}
    last_fence: dict[str, int] = {}
    finished_runs: set[str] = set()
    for event in merged:
        report.events += 1
        name = event.get("event")
        run = event.get("run_id", "")
        where = f"{event.get('ts', '?')} {run}/{event.get('stream', '')}/{event.get('step', '')}"
        if name == "run_started":
            report.runs += 1
            caps[run] = dict(event.get("caps", {}))
            depends[run] = dict(event.get("depends_on", {}))
            for cls, cap in caps[run].items():
                report.caps.setdefault(cls, cap)
        elif name == "run_finished":
            finished_runs.add(run)
        elif name == "stream_started":
            stream = event["stream"]
            needs[(run, stream)] = dict(event.get("needs", {}))
            for dep in depends.get(run, {}).get(stream, []):
                if stream_status.get((run, dep)) != "succeeded":
                    report.violations.append(
                        f"{where}: stream started before its dependency {dep!r} succeeded"
                    )
        elif name == "stream_finished":
            stream_status[(run, event["stream"])] = str(event.get("status"))
        elif name == "step_started":
            report.steps += 1
            key = _key(event)
            cls = str(event.get("resource_class"))
            cap = caps.get(run, {}).get(cls)
            class_count[cls] += 1
            report.peak[cls] = max(report.peak.get(cls, 0), class_count[cls])
            if cap is not None and class_count[cls] > cap:
                report.violations.append(
                    f"{where}: class {cls!r} ran {class_count[cls]} steps at once, cap {cap}"
                )
            for lock in event.get("locks", []):
                if lock in lock_holder:
                    other = "/".join(str(p) for p in lock_holder[lock][:3])
                    report.violations.append(f"{where}: lock {lock!r} already held by {other}")
                lock_holder[lock] = key
                report.lock_grants[lock] += 1
            for lock, fence in (event.get("fences") or {}).items():
                if lock in last_fence and fence <= last_fence[lock]:
                    report.violations.append(
                        f"{where}: fencing token {fence} for {lock!r} does not exceed "
                        f"{last_fence[lock]}"
                    )
                last_fence[lock] = max(fence, last_fence.get(lock, fence))
            for need in needs.get((run, str(event.get("stream"))), {}).get(key[2], []):
                if (run, key[1], need) not in step_ok:
                    report.violations.append(f"{where}: started before its need {need!r} succeeded")
            active[key] = event
        elif name == "step_finished" and event.get("started") is not False:
            # (``started: false``: cancelled while queued, or resumed as interrupted.)
            key = _key(event)
            started = active.pop(key, None)
            if started is None:
                report.violations.append(f"{where}: finished without having started")
                continue
            class_count[str(started.get("resource_class"))] -= 1
            for lock in started.get("locks", []):
                if lock_holder.get(lock) == key:
                    del lock_holder[lock]
            if event.get("status") == "succeeded":
                step_ok.add((run, key[1], key[2]))
    for key in active:
        text = f"{'/'.join(str(p) for p in key[:3])} attempt {key[3]} started but never finished"
        if key[0] in finished_runs:
            report.violations.append(text)
        else:
            report.warnings.append(text + " (its run did not finish: crashed or still running)")


def verify_event_files(paths: Sequence[Path]) -> VerifyReport:
    """Read each JSON-lines file and verify them together."""
    return verify_events([read_events(path) for path in paths])
