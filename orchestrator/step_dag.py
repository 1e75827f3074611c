"""One stream's steps as a DAG of ``needs``: each step is queued once its needs succeeded.

A ready step is queued at the coordinator without a task when it can be
(:meth:`~orchestrator.step_runner.StepRunner.queue`): steps of a full class, or waiting for
locks, are queue entries, and a step's task is started by its grant and lives until the
step ends. So a stream of 10,000 ready steps under a cap of 2 holds 2 tasks, not 10,000.
Otherwise (a coordinator that cannot queue without a task, a step with a lock timeout) the
step's task waits in :meth:`~orchestrator.coordination.base.Coordinator.acquire`. A step task
that succeeded and frees its slot runs the entry of this stream granted at that release
itself (with the in-process coordinator, whose release cannot suspend) instead of a new task.

The steps ready at the start are queued :data:`START_BURST` at a time with a yield between,
so that their events reach the event file and the run store as they go instead of all waiting
in memory; a successor readied meanwhile is queued after them. A stream cut before all are
queued ends the rest ``skipped`` (never queued).

Either way the events are the same: ``step_queued`` when the step is queued,
``step_waiting`` when it cannot be granted at once, and a step cancelled while queued ends
``cancelled`` with ``started: false``. A successor is queued while the step it needs still
holds its grant, so it competes for the released slot and locks by its key.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from orchestrator.events import EventLog
from orchestrator.step_runner import (
    Drain,
    Queued,
    StepJob,
    StepOutcome,
    StepRunner,
    StepStatus,
    Suspended,
)
from streams.model import StepSpec
from streams.validation import effective_needs

__all__ = ["START_BURST", "StepDag"]

#: Ready steps queued between two yields to the event loop (see :meth:`StepDag._start_ready`).
START_BURST = 16


@dataclass(slots=True)
class _Pickup:
    """Whether a step task promised to take over the next entry granted (see
    :meth:`StepDag._before_release`)."""

    promised: bool = False


class StepDag:
    """Runs the steps of one stream that are not settled yet (see the module doc).

    ``statuses`` and ``completed`` are the stream's, filled in as steps end; ``failed``
    lists the steps that did not succeed (resumed ones included) and ``suspended`` those a
    drain stopped before they started."""

    def __init__(
        self,
        *,
        steps: Sequence[StepSpec],
        runner: StepRunner,
        drain: Drain,
        job: Callable[[StepSpec, int], StepJob],
        first_attempt: Mapping[str, int],
        statuses: dict[str, StepStatus],
        completed: list[tuple[StepSpec, StepOutcome | None]],
        failed: list[str],
        log: EventLog,
    ) -> None:
        self._steps = steps
        self._runner = runner
        self._drain = drain
        self._job = job
        self._first_attempt = first_attempt
        self.statuses = statuses
        self.completed = completed
        self.failed = failed
        self.suspended: list[str] = []
        self._log = log
        needs = effective_needs(steps)
        self._dependents: dict[str, list[str]] = {step_id: [] for step_id in needs}
        for step_id, deps in needs.items():
            for dep in deps:
                self._dependents[dep].append(step_id)
        self._by_id = {step.id: step for step in steps}
        self._waiting = {
            step_id: sum(statuses.get(d) is not StepStatus.SUCCEEDED for d in deps)
            for step_id, deps in needs.items()
        }
        self._queued: dict[str, Queued] = {}  # in the coordinator's queue, without a task
        self._granted: dict[str, Queued] = {}  # granted; its task has not begun yet
        self._active = 0  # step tasks begun or about to
        self._promised = 0  # step tasks about to take over the next entry granted
        self._handed: deque[Queued] = deque()  # granted entries taken over by such a task
        # Successors readied while the steps ready at the start are still being queued.
        self._deferred: deque[StepSpec] | None = None
        self._closing = False
        self._wake = anyio.Event()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                with self._drain.calling(self._on_drain):
                    try:
                        if not self.failed:
                            await self._start_ready()
                        while self._queued or self._granted or self._active:
                            self._wake = anyio.Event()
                            await self._wake.wait()
                    finally:
                        self._closing = True
                        self._withdraw_all(StepStatus.CANCELLED)
        finally:
            # Granted while the stream was being cancelled, their tasks cancelled before
            # they began: give the grants back and record the ends.
            granted, self._granted = list(self._granted.values()), {}
            for entry in granted:
                assert entry.grant is not None
                await self._runner.release(entry.grant)  # shielded, within its deadline
                self._ended_unstarted(entry, StepStatus.CANCELLED)

    # -- queueing ---------------------------------------------------------------------------

    async def _start_ready(self) -> None:
        """Queue every step whose needs are met at the start, yielding to the event loop
        every :data:`START_BURST` steps: the events of a burst (``step_queued``,
        ``step_waiting``) wait in memory for the event file and the run store until the loop
        runs their writers, so a 10,000-step stream queued in one stretch held all of its
        events at once (most of the run's peak memory). A successor readied meanwhile (its
        need done during a yield) is queued after all of them, as it was when they were
        queued in one stretch."""
        ready = deque(
            step
            for step in self._steps
            if step.id not in self.statuses and self._waiting[step.id] == 0
        )
        self._deferred = deque()
        try:
            started = 0
            while ready or (self._deferred and not self.failed):
                step = ready.popleft() if ready else self._deferred.popleft()
                await self._start(step, wait=False)
                started += 1
                if started % START_BURST == 0:
                    await anyio.lowlevel.checkpoint()
        finally:
            self._deferred = None  # a stream cut meanwhile: those never queued end skipped

    async def _start(self, step: StepSpec, *, wait: bool) -> None:
        """Queue ``step``: without a task if the runner can, else as a task waiting in
        ``acquire`` (``wait``: return once it stands in the queue)."""
        job = self._job(step, self._first_attempt.get(step.id, 1))
        try:
            entry = self._runner.queue(job, self._log, self._on_granted)
        except Suspended:
            self.suspended.append(step.id)
            return
        if entry is not None:
            if entry.grant is None:
                self._queued[step.id] = entry
            return
        self._active += 1
        if wait:
            await self._tg.start(self._run_waiting, step, job)
        else:
            self._tg.start_soon(self._run_waiting, step, job)

    def _on_granted(self, entry: Queued) -> None:
        step_id = entry.job.step
        self._queued.pop(step_id, None)
        self._granted[step_id] = entry
        if self._promised:  # a step task releasing its grant takes this one over
            self._promised -= 1
            self._handed.append(entry)
        else:
            self._tg.start_soon(self._run_granted, entry)

    def _withdraw_all(self, status: StepStatus | None) -> None:
        """Take every queued entry out of the coordinator's queue; each ends ``status``
        (None: suspended by a drain, recorded nowhere)."""
        while self._queued:
            for step_id in list(self._queued):  # in queue order
                entry = self._queued.pop(step_id, None)
                if entry is None:  # granted meanwhile: _on_granted took it over
                    continue
                assert entry.ticket is not None
                if entry.ticket.withdraw():
                    self._ended_unstarted(entry, status)
        self._wake.set()

    def _on_drain(self) -> None:
        self._withdraw_all(None)

    def _ended_unstarted(self, entry: Queued, status: StepStatus | None) -> None:
        step_id = entry.job.step
        if status is None:
            self.suspended.append(step_id)
        else:
            entry.cancelled()
            self.statuses[step_id] = status

    async def _before_release(self, step: StepSpec, pickup: _Pickup | None) -> None:
        """After ``step`` succeeded, while it still holds its grant: its successors are
        queued, then (a granted step's task, with a coordinator that releases at once) it
        promises to take over one entry granted while it releases. The runner releases right
        after this without suspending and the step's task returns without waiting on
        anything else, so an entry handed over starts at once. (A release that awaits, as
        Redis's, would hold any entry granted meanwhile until it returns: no promise then.)"""
        await self._start_successors(step)
        if pickup is not None and self._runner.releases_at_once:
            pickup.promised = True
            self._promised += 1

    async def _start_successors(self, step: StepSpec) -> None:
        # Awaited while ``step`` still holds its grant: each successor stands in the
        # coordinator's queue before the release.
        if self.failed or self._closing or self._drain.started:
            return
        for child in self._dependents[step.id]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0:
                if self._deferred is not None:  # the steps ready at the start go first
                    self._deferred.append(self._by_id[child])
                else:
                    await self._start(self._by_id[child], wait=True)

    # -- step tasks -------------------------------------------------------------------------

    async def _run_granted(self, entry: Queued) -> None:
        """A step task: performs ``entry``, then any entry granted while it released its
        grant (see :meth:`_before_release`), so a capped class's next step in this stream
        starts in the task that freed its slot instead of a new one."""
        while True:
            self._granted.pop(entry.job.step, None)
            self._active += 1
            pickup = _Pickup()
            await self._perform(self._by_id[entry.job.step], entry.job, entry, pickup=pickup)
            if not pickup.promised:
                return
            if not self._handed:
                self._promised -= 1  # nothing was granted meanwhile: the promise lapses
                return
            entry = self._handed.popleft()

    async def _run_waiting(
        self,
        step: StepSpec,
        job: StepJob,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        queued = False

        def on_queued() -> None:
            nonlocal queued
            if not queued:
                queued = True
                task_status.started()

        try:
            await self._perform(step, job, None, on_queued)
        finally:
            on_queued()  # a step that never queued (drained first) must not hang tg.start

    async def _perform(
        self,
        step: StepSpec,
        job: StepJob,
        entry: Queued | None,
        on_queued: Callable[[], None] | None = None,
        *,
        pickup: _Pickup | None = None,
    ) -> None:
        status = StepStatus.CANCELLED
        suspended = False
        try:
            result = await self._runner.run(
                job,
                self._log,
                on_queued=on_queued,
                before_release=lambda: self._before_release(step, pickup),
                queued=entry,
            )
            status = result.status
            if status is StepStatus.SUCCEEDED:
                self.completed.append((step, result))
        except Suspended:
            suspended = True
            self.suspended.append(step.id)
            return
        finally:
            if not suspended:
                self.statuses[step.id] = status
            self._active -= 1
            if not (self._active or self._queued or self._granted):
                self._wake.set()  # the stream's last step ended (run() waits for nothing else)
        if status is not StepStatus.SUCCEEDED:
            self.failed.append(step.id)
