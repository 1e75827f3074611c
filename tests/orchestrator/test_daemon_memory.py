"""A daemon keeps nothing of a run once it has ended (issue 16: RSS grew with every run).

The daemon's RunManager with a real SQLite store. The garbage collector is disabled while a
test runs, so only the daemon's own collection at a run's end can free the run's cycles.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from agents import builtin_registry
from orchestrator.coordination import InProcessCoordinator
from orchestrator.daemon.run_manager import RunManager
from orchestrator.settings import Settings
from orchestrator.store import open_store
from tests.helpers import plan_from, stream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_automatic_gc() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_an_ended_run_leaves_no_scheduler_alive(
    tmp_path: Path, no_automatic_gc: None
) -> None:
    plan = plan_from(
        [
            stream(
                "s",
                [
                    {"id": f"t{i}", "agent": "worker", "action": "sleep", "with": {"seconds": 0}}
                    for i in range(5)
                ],
            )
        ],
        agents={"worker": {"class": "cpu", "can": ["sleep"]}},
        caps={"cpu": 2},
    )
    settings = Settings(state_dir=tmp_path / "state")
    async with open_store(None, state_dir=settings.state_dir) as store:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                runs = RunManager(
                    settings=settings,
                    store=store,
                    coordinator=InProcessCoordinator(),
                    registry=builtin_registry(),
                    task_group=tg,
                )
                run_id = await runs.submit(plan, "plan: test", "test.yaml", {})
                scheduler = weakref.ref(runs.active[run_id].scheduler)
            # The task group waited for the run's task: the run ended and was collected.
        assert scheduler() is None
        assert run_id not in runs.active
        record = await store.get_run(run_id)
        assert record is not None and record.status == "succeeded"
