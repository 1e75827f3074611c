"""Fixtures of the action tests: real Redis servers, step contexts, secret checks."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from agents.base import ActionContext, ActionResult

#: The type of the ``make_ctx`` fixture: a step context with this environment.
MakeCtx = Callable[..., ActionContext]


@pytest.fixture
def make_ctx(tmp_path: Path) -> MakeCtx:
    """``make_ctx(VAR="value", ...)``: a context whose step environment is PATH plus these."""

    def make(**env: str) -> ActionContext:
        return ActionContext(
            run_id="run-1",
            stream="stream",
            step="step",
            agent="agent",
            attempt=1,
            fences={},
            env={"PATH": os.environ.get("PATH", ""), **env},
            workdir=tmp_path,
            kill_grace_s=0.5,
        )

    return make


def assert_no_secret(result: ActionResult | BaseException, *secrets: str) -> None:
    """No secret appears anywhere a user or a log could see it: the summary, output,
    evidence, metrics, details and the undo record (its repr shows SecretStr masked)."""
    text = repr(result) + str(result)
    if isinstance(result, ActionResult):
        text += result.summary + result.output
        text += "".join(repr(dict(e.detail)) + e.excerpt for e in result.evidence)
    for secret in secrets:
        assert secret not in text, f"secret leaked: {text[:2000]}"


def numbers(metrics: Mapping[str, float | str]) -> dict[str, float]:
    """The numeric metrics (all of them, for these actions)."""
    return {k: float(v) for k, v in metrics.items()}
