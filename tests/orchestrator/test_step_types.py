"""The step runner's helpers: the loop clock it reads and the parameters it skips for
secrets."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel, ConfigDict

from agents.actions.sleep import SleepParams
from foundation.clock import loop_time
from orchestrator.step_types import textless_params
from tests.helpers import on_virtual_clock


class _Numbers(BaseModel):
    count: int = 0
    ratio: float | None = None
    flag: bool = False


class _Text(BaseModel):
    count: int = 0
    token: str = ""


class _Nested(BaseModel):
    inner: _Numbers = _Numbers()


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")

    count: int = 0


class _Loose(BaseModel):
    value: Any = None


@pytest.mark.parametrize(
    ("model", "textless"),
    [
        (SleepParams, True),  # a duration is parsed to a float at load
        (_Numbers, True),
        (_Text, False),
        (_Nested, False),  # not looked into: dumped and searched as before
        (_Open, False),  # extra fields may be text
        (_Loose, False),
    ],
)
def test_only_models_of_numbers_and_flags_skip_the_secret_search(
    model: type[BaseModel], textless: bool
) -> None:
    assert textless_params(model) is textless


def test_loop_time_reads_the_asyncio_loop_clock() -> None:
    async def main() -> tuple[float, float, float]:
        before = anyio.current_time()
        now = loop_time()
        return before, now, anyio.current_time()

    before, now, after = anyio.run(main, backend="asyncio")
    assert before <= now <= after


def test_loop_time_is_the_virtual_clock_on_trio() -> None:
    async def main() -> tuple[float, float]:
        await anyio.sleep(5)  # virtual: takes no real time
        return loop_time(), anyio.current_time()

    now, current = on_virtual_clock(main)
    assert now == current
    assert now >= 5
