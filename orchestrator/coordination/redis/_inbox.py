"""A process's grant inbox on Redis: the wake-up hint for its waiters.

When a script grants a waiter of another process, it pushes a note (holder, grant id,
fences, grant time) onto that process's inbox list. One daemon thread per process waits on
the list with a blocking pop and hands each note to the event loop, so a release reaches
the next waiter in about one round trip. The queue in Redis decides who is granted; a note
lost to a broken connection is made up for by the renewal thread, which reports grants
made for this process's waiters.

A thread rather than a task: the coordinator may be entered in one task and left in
another (pytest-asyncio fixtures do that), which no task group allows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis

from orchestrator.coordination.redis import _replies as replies
from orchestrator.coordination.redis._leases import LoopCaller

__all__ = ["STOP_NOTE", "Inbox"]

#: Backoff between pops while Redis is unreachable.
_RETRY_FIRST_S, _RETRY_MAX_S = 0.05, 1.0

#: Pushed by the coordinator on exit so the blocking pop returns at once.
STOP_NOTE = "stop"


class Inbox:
    """The inbox thread; ``client``'s reply timeout must exceed ``block_s``."""

    def __init__(
        self,
        *,
        client: redis.Redis,
        key: str,
        block_s: float,
        caller: LoopCaller,
        deliver: Callable[[str, str, list[int], int], None],
    ) -> None:
        self._client = client
        self._key = key
        self._block_s = block_s
        self._caller = caller
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orch-grant-inbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask the thread to end; it does once its pop returns (push STOP_NOTE to hurry)."""
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        delay = _RETRY_FIRST_S
        while not self._stop.is_set():
            try:
                item = self._client.blpop([self._key], timeout=self._block_s)
            except (redis.RedisError, OSError):
                # Redis is away: the renewal thread notices grants made meanwhile.
                self._stop.wait(delay)
                delay = min(2 * delay, _RETRY_MAX_S)
                continue
            delay = _RETRY_FIRST_S
            if not item or item[1] == STOP_NOTE:
                continue
            self._caller.call(self._deliver, *replies.note(item[1]))
