"""The in-process coordinator runs no dispatch pass when a step queues into a full class (such
a pass could only grant the newcomer). Checked against a coordinator that always runs it:
random submits (locks, priorities, age credit past the starvation threshold), releases,
withdrawals and clock jumps give the same grants after every operation."""

from __future__ import annotations

import random
from typing import Any

import pytest

import orchestrator.coordination.memory as memory
from orchestrator.coordination import InProcessCoordinator, Need
from orchestrator.coordination.base import Grant


class _AlwaysPasses(InProcessCoordinator):
    def _enqueue(self, need: Need, now: float, **kwargs: Any) -> Any:
        waiter = super()._enqueue(need, now, **kwargs)
        self._dispatch(now)
        return waiter


@pytest.mark.parametrize("seed", range(60))
def test_skipping_the_pass_into_a_full_class_grants_the_same(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(seed)
    clock = [0.0]
    monkeypatch.setattr(memory, "loop_time", lambda: clock[0])
    coordinators = [
        InProcessCoordinator(aging_s=5, starve_after_s=20),
        _AlwaysPasses(aging_s=5, starve_after_s=20),
    ]
    granted: list[dict[str, Grant]] = [{}, {}]
    ever: set[str] = set()  # every holder granted, released or not
    tickets: list[dict[str, Any]] = [{}, {}]
    caps = {"a": 1, "b": 2, "c": None}
    for n in range(150):
        op = rnd.random()
        if op < 0.5:
            cls = rnd.choice("abc")
            need = Need(
                holder=f"h{n}",
                resource_class=cls,
                cap=caps[cls],
                locks=tuple(rnd.sample(["x", "y", "z"], rnd.randint(0, 2))),
                priority=rnd.randint(1, 3),
                age_credit_s=rnd.choice([0.0, 0.0, 30.0]),
            )
            for i, coordinator in enumerate(coordinators):
                tickets[i][need.holder] = coordinator.submit(
                    need, on_granted=lambda g, i=i: _grant(granted[i], ever, g)
                )
        elif op < 0.8 and granted[0]:
            holder = rnd.choice(sorted(granted[0]))
            for i, coordinator in enumerate(coordinators):
                coordinator._release_now(granted[i].pop(holder))
        elif op < 0.9:
            waiting = sorted(h for h in tickets[0] if h not in granted[0])
            if waiting:
                holder = rnd.choice(waiting)
                for i in range(2):
                    tickets[i].pop(holder).withdraw()
        else:
            clock[0] += rnd.choice([1.0, 10.0, 30.0])
        assert sorted(granted[0]) == sorted(granted[1]), (seed, n)
    assert len(ever) >= 20  # the generator made the coordinators grant, and queue


def _grant(granted: dict[str, Grant], ever: set[str], grant: Grant) -> None:
    granted[grant.need.holder] = grant
    ever.add(grant.need.holder)
