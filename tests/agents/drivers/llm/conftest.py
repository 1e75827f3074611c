"""Helpers of the LLM driver tests: a step's DriverCall on a temporary working directory,
with a real ToolGate over a real (in-process) coordinator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.actions import builtin_registry
from agents.base import ActionContext
from agents.drivers import DriverCall, StepGrant
from agents.drivers.llm import LlmDriver, LlmParams, ModelFactory, TokenBudget
from orchestrator.coordination import InProcessCoordinator
from orchestrator.events import EventLog, MemorySink
from orchestrator.tool_locks import CoordinatorToolLocks
from streams.model import LlmSpec

FILE_TOOLS = ("file.read", "file.write", "file.edit")


def llm_spec(**extra: Any) -> LlmSpec:
    fields: dict[str, Any] = {"provider": "openai", "model": "scripted", "retry_backoff": 0.01}
    fields.update(extra)
    return LlmSpec.model_validate(fields)


def make_call(
    workdir: Path,
    sink: MemorySink,
    *,
    spec: LlmSpec | None = None,
    can: tuple[str, ...] = FILE_TOOLS,
    instruction: str = "Bump the counter",
    agent: str = "writer",
    env: dict[str, str] | None = None,
) -> DriverCall:
    params = LlmParams(
        llm=spec or llm_spec(),
        plan="demo",
        instruction=instruction,
        system="# Context Package - writer\nYou keep counter.txt.",
        can=can,
    )
    ctx = ActionContext(
        run_id="run-1",
        stream="counter",
        step="step-1",
        agent=agent,
        attempt=1,
        fences={},
        env=env or {},
        workdir=workdir,
    )
    return DriverCall(params, ctx, StepGrant(), EventLog("run-1", [sink]))


def make_driver(
    factory: ModelFactory, *, budget: TokenBudget | None = None, stale_guard: bool = True
) -> LlmDriver:
    return LlmDriver(
        builtin_registry(),
        CoordinatorToolLocks(InProcessCoordinator()),
        budget=budget,
        model_factory=factory,
        stale_guard=stale_guard,
    )


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()
