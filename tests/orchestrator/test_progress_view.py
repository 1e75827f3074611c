"""The live view tells the truth (issue 17): held-by follows the holder, rolling back is
shown as such, a cancelled step's wait disappears, running bars are not red, and a header
line gives the run's elapsed time and steps done. Checked on the rendered text."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table

from orchestrator.progress import RunView, render_view

T0 = "2026-12-03T10:00:00.000000Z"


def ts(seconds: int) -> str:
    return f"2026-12-03T10:00:{seconds:02d}.000000Z"


def events() -> list[dict[str, Any]]:
    step = {"agent": "infrastructure-recovery", "resource_class": "light"}
    return [
        {"event": "run_started", "ts": ts(0), "run_id": "r1", "plan": "p", "streams": ["redis-auth", "db"], "steps": 5},  # noqa: E501
        {"event": "stream_started", "ts": ts(0), "stream": "redis-auth", "steps": 3},
        {"event": "stream_started", "ts": ts(0), "stream": "db", "steps": 2},
        {"event": "step_started", "ts": ts(1), "stream": "redis-auth", "step": "restart-redis", **step},  # noqa: E501
        {"event": "step_waiting", "ts": ts(1), "stream": "db", "step": "migrate", **step,
         "waiting_for": ["redis (locked; held by redis-auth/restart-redis)"]},
        {"event": "step_finished", "ts": ts(2), "stream": "redis-auth", "step": "restart-redis", "status": "succeeded", **step},  # noqa: E501
        {"event": "step_started", "ts": ts(2), "stream": "redis-auth", "step": "validate-auth", **step},  # noqa: E501
        # The coordinator tells the waiter again: the lock changed hands.
        {"event": "step_waiting", "ts": ts(2), "stream": "db", "step": "migrate", **step,
         "waiting_for": ["redis (locked; held by redis-auth/validate-auth)"]},
    ]  # fmt: skip


def text_of(view: RunView, now_s: float) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(render_view(view, now_s))
    return console.export_text()


def table_of(view: RunView) -> Table:
    shown = render_view(view, view.last_ts)
    assert isinstance(shown, Group)
    table = shown.renderables[1]
    assert isinstance(table, Table)
    return table


def fold(items: list[dict[str, Any]]) -> RunView:
    view = RunView()
    for event in items:
        view.apply(event)
    return view


def test_held_by_names_the_current_holder_and_the_header_counts() -> None:
    view = fold(events())
    text = text_of(view, view.last_ts + 63)
    assert "held by redis-auth/validate-auth" in text
    assert "restart-redis" not in text  # neither as holder nor as running
    first = text.splitlines()[0]
    assert first.startswith("run r1 (p): running")
    assert "1m05s elapsed" in first and "1/5 steps done" in first


def test_a_cancelled_steps_wait_disappears() -> None:
    view = fold(
        [
            *events(),
            {"event": "step_finished", "ts": ts(3), "stream": "db", "step": "migrate",
             "agent": "a", "status": "cancelled", "started": False},
        ]
    )  # fmt: skip
    text = text_of(view, view.last_ts)
    assert "waits for" not in text and "migrate" not in text
    assert view.agents["a"].waiting == {}


def test_rolling_back_is_shown_with_its_rollback_steps() -> None:
    view = fold(
        [
            *events(),
            {"event": "rollback_started", "ts": ts(4), "stream": "redis-auth", "reason": "gate failed"},  # noqa: E501
            {"event": "step_started", "ts": ts(4), "stream": "redis-auth", "step": "restore-config",
             "agent": "infrastructure-recovery", "phase": "rollback"},
        ]
    )  # fmt: skip
    text = text_of(view, view.last_ts)
    row = next(line for line in text.splitlines() if line.startswith("redis-auth"))
    assert "rolling back" in row
    assert "rollback restore-config (infrastructure-recovery)" in row


def test_running_bars_are_not_red() -> None:
    view = fold(events())
    table = table_of(view)
    bars = [
        cell for column in table.columns for cell in column.cells if isinstance(cell, ProgressBar)
    ]
    assert bars and all("red" not in str(bar.complete_style) for bar in bars)
    failed = fold(
        [*events(), {"event": "stream_finished", "ts": ts(5), "stream": "db", "status": "failed"}]
    )
    table = table_of(failed)
    styles = [
        str(c.complete_style)
        for col in table.columns
        for c in col.cells
        if isinstance(c, ProgressBar)
    ]
    assert styles == ["cyan", "red"]
