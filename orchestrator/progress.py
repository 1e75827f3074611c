"""Live progress for people: a view of a run built from its events, and two renderings.

:class:`RunView` folds events into per-stream state (steps done / total, what runs now and
who runs it, what it waits for and who holds that, elapsed against the timeline). On a
terminal, :class:`LiveProgress` shows one rich row per stream, refreshed several times a
second; elsewhere it prints one plain line per notable event. Both are event sinks, so the
same code serves ``orchestrator run`` and ``orchestrator watch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.events import call_soon as _call_soon
from orchestrator.token_usage import TokenUsage, format_tokens
from streams.durations import format_duration

__all__ = [
    "AgentView",
    "LiveProgress",
    "PlainProgress",
    "RunView",
    "StreamView",
    "format_timeline",
    "header",
    "progress_sink",
]

_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "magenta",
    "running": "cyan",
    "rolling back": "yellow",
    "pending": "dim",
}
#: Progress bar colours: a running (or pending) stream's bar is never red.
_BAR_STYLE = {"succeeded": "green", "failed": "red", "rolling back": "yellow"}


#: The events :meth:`RunView.apply` reads into a stream's view (others only create it).
_STREAM_EVENTS = frozenset(
    {
        "stream_started",
        "step_waiting",
        "step_started",
        "step_finished",
        "step_skipped",
        "rollback_started",
        "rollback_finished",
        "stream_finished",
    }
)
#: The events :class:`PlainProgress` prints a line for.
_PLAIN_EVENTS = frozenset(
    {
        "run_started",
        "stream_started",
        "step_waiting",
        "step_started",
        "step_finished",
        "step_retrying",
        "gate_evaluated",
        "rollback_started",
        "rollback_step_failed",
        "rollback_finished",
        "stream_finished",
        "run_finished",
    }
)


def _parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@dataclass(slots=True)
class StreamView:
    id: str
    status: str = "pending"
    total: int = 0
    done: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    expected_s: float | None = None
    limit_s: float | None = None
    running: dict[str, str] = field(default_factory=dict)  # step -> agent
    waiting: dict[str, str] = field(default_factory=dict)  # step -> what it waits for
    reason: str = ""
    #: Steps of the rollback (and undo) phase, shown as such while the stream rolls back.
    rollback_steps: set[str] = field(default_factory=set)
    #: Model tokens and requests of the stream's steps (LLM drivers only; zero otherwise).
    usage: TokenUsage = field(default_factory=TokenUsage)

    def elapsed(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        return (self.finished_at or now) - self.started_at


@dataclass(slots=True)
class AgentView:
    """What one agent is doing in one run: steps running (with the locks and fencing
    tokens they hold), steps waiting (and for what), and its last finished step."""

    name: str
    resource_class: str = ""
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # "stream/step" -> info
    waiting: dict[str, list[str]] = field(default_factory=dict)  # "stream/step" -> blockers
    queued: set[str] = field(default_factory=set)
    last: dict[str, Any] | None = None

    @property
    def state(self) -> str:
        if self.running:
            return "running"
        if self.waiting:
            return "waiting"
        return "queued" if self.queued else "idle"


@dataclass(slots=True)
class RunView:
    """Everything a progress display needs, folded from events."""

    run_id: str = ""
    plan: str = ""
    status: str = "running"
    streams: dict[str, StreamView] = field(default_factory=dict)
    agents: dict[str, AgentView] = field(default_factory=dict)
    #: The last event's ``ts`` as written; parsed only when read (:attr:`last_ts`).
    last_ts_text: str = ""

    @property
    def last_ts(self) -> float:
        """The last event's time in epoch seconds (0 before any)."""
        return _parse_ts(self.last_ts_text) if self.last_ts_text else 0.0

    started_at: float | None = None
    finished_at: float | None = None
    #: Steps in the plan (``run_started``'s count; streams add theirs once started).
    total_steps: int = 0
    #: Whether :attr:`agents` is kept (the terminal views show streams only, so skip it).
    track_agents: bool = True

    @property
    def steps_done(self) -> int:
        return sum(sv.done for sv in self.streams.values())

    @property
    def usage(self) -> TokenUsage:
        """The run's model tokens and requests: its streams' together."""
        total = TokenUsage()
        for sv in self.streams.values():
            total += sv.usage
        return total

    def elapsed(self, now: float) -> float:
        """The run's elapsed time: from its start to its end (or ``now``)."""
        if self.started_at is None:
            return 0.0
        return max(0.0, (self.finished_at or now) - self.started_at)

    def _agent_step(self, event: Mapping[str, Any]) -> tuple[AgentView, str] | None:
        name = event.get("agent")
        if not name:
            return None
        agent = self.agents.get(name)  # looked up before one is made: most events find it
        if agent is None:
            agent = self.agents.setdefault(str(name), AgentView(str(name)))
        resource_class = event.get("resource_class")
        if resource_class:
            agent.resource_class = str(resource_class)
        return agent, f"{event.get('stream')}/{event.get('step')}"

    def _apply_agent(self, name: Any, event: Mapping[str, Any]) -> None:
        found = self._agent_step(event)
        if found is None:
            return
        agent, key = found
        if name == "step_queued":
            agent.queued.add(key)
        elif name == "step_waiting":
            agent.waiting[key] = list(event.get("waiting_for", []))
        elif name == "step_started":
            agent.queued.discard(key)
            agent.waiting.pop(key, None)
            agent.running[key] = {
                "since": event.get("ts"),
                "attempt": event.get("attempt"),
                "locks": dict(event.get("fences") or {}),
            }
        elif name in ("step_finished", "step_skipped"):
            agent.queued.discard(key)
            agent.waiting.pop(key, None)
            agent.running.pop(key, None)
            if name == "step_finished":
                agent.last = {"step": key, "status": event.get("status"), "ts": event.get("ts")}

    def apply(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        ts = event.get("ts")
        if ts is not None:
            self.last_ts_text = str(ts)
        if self.track_agents:
            self._apply_agent(name, event)
        if name == "run_started":
            self.run_id = str(event.get("run_id", ""))
            self.plan = str(event.get("plan", ""))
            self.started_at = self.started_at or self.last_ts
            steps = event.get("steps")
            self.total_steps = steps if type(steps) is int else self.total_steps
            for sid in event.get("streams", []):
                self.streams.setdefault(sid, StreamView(sid))
            return
        if name in ("run_finished", "run_suspended"):
            self.status = str(event.get("status", "suspended"))
            self.finished_at = self.last_ts
            for agent in self.agents.values():
                agent.running.clear()
                agent.waiting.clear()
                agent.queued.clear()
            return
        sid = event.get("stream")
        if sid is None:
            return
        view = self.streams.get(sid)
        if view is None:
            view = self.streams.setdefault(str(sid), StreamView(str(sid)))
        if name not in _STREAM_EVENTS:
            return  # changes nothing more (step_queued, evidence_collected, ...)
        step = str(event.get("step", ""))
        if name == "stream_started":
            view.status = "running"
            view.total = int(event.get("steps", 0))
            view.started_at = self.last_ts
            timeline = event.get("timeline") or {}
            view.expected_s = timeline.get("expected_s")
            view.limit_s = timeline.get("limit_s")
        elif name == "step_waiting":
            # Re-emitted whenever the holder changes: the latest one stands.
            view.waiting[step] = "; ".join(event.get("waiting_for", []))
        elif name == "step_started":
            view.waiting.pop(step, None)
            view.running[step] = str(event.get("agent", ""))
            if event.get("phase"):
                view.rollback_steps.add(step)
        elif name in ("step_finished", "step_skipped"):
            # A finished (cancelled, skipped) step waits for nothing any more.
            view.running.pop(step, None)
            view.waiting.pop(step, None)
            if event.get("status") == "succeeded" and not event.get("phase"):
                view.done += 1
            if name == "step_finished":
                view.usage.add(event.get("usage"))
        elif name == "rollback_started":
            view.status = "rolling back"
            view.reason = f"rolling back: {event.get('reason')}"
        elif name == "rollback_finished":
            view.reason = f"rollback {event.get('status')}: {event.get('reason')}"
        elif name == "stream_finished":
            view.status = str(event.get("status"))
            view.reason = str(event.get("reason") or "")
            view.finished_at = self.last_ts
            view.running.clear()
            view.waiting.clear()
            view.rollback_steps.clear()


def format_timeline(view: StreamView, now: float) -> str:
    """A stream's elapsed time against its timeline, as the live view shows it
    (``1m 02s / 15m (limit 30m)``); ``now`` in epoch seconds."""
    text = format_duration(view.elapsed(now))
    if view.limit_s is not None:
        text += f" / {format_duration(view.expected_s or view.limit_s)}"
        if view.limit_s != view.expected_s:
            text += f" (limit {format_duration(view.limit_s)})"
    return text


def header(view: RunView, now: float) -> Text:
    """The view's first line: run, plan, status, total elapsed time and steps done."""
    title = Text(f"run {view.run_id} ({view.plan}): ")
    title.append(view.status, style=_STATUS_STYLE.get(view.status, ""))
    total = max(view.total_steps, sum(sv.total for sv in view.streams.values()))
    title.append(
        f"  {format_duration(view.elapsed(now))} elapsed, {view.steps_done}/{total} steps done"
    )
    tokens = format_tokens(view.usage)
    if tokens:
        title.append(f", tokens: {tokens}")
    return title


def _doing(sv: StreamView) -> str:
    return ", ".join(
        f"rollback {step} ({agent})" if step in sv.rollback_steps else f"{step} ({agent})"
        for step, agent in sv.running.items()
    )


def render_view(view: RunView, now: float) -> RenderableType:
    """A header line, then a table with one row per stream."""
    table = Table(box=None, pad_edge=False)
    table.add_column("stream", no_wrap=True)
    table.add_column("status")
    table.add_column("progress", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("now")
    table.add_column("elapsed / timeline", no_wrap=True)
    # Only runs with model calls get a tokens column: others look as they always did.
    tokens = any(sv.usage for sv in view.streams.values())
    if tokens:
        table.add_column("tokens", no_wrap=True)
    for sv in view.streams.values():
        doing = _doing(sv)
        waits = "; ".join(f"{step} waits for {what}" for step, what in sv.waiting.items())
        now_text = Text(doing or waits or sv.reason or "")
        if waits and doing:
            now_text.append(f"  |  {waits}", style="yellow")
        row: list[RenderableType] = [
            sv.id,
            Text(sv.status, style=_STATUS_STYLE.get(sv.status, "")),
            ProgressBar(
                total=max(sv.total, 1),
                completed=sv.done,
                width=20,
                complete_style=_BAR_STYLE.get(sv.status, "cyan"),
                finished_style=_BAR_STYLE.get(sv.status, "cyan"),
            ),
            f"{sv.done}/{sv.total}",
            now_text,
            format_timeline(sv, now),
        ]
        if tokens:
            row.append(format_tokens(sv.usage))
        table.add_row(*row)
    # Its own line, not the table's title, which would wrap to the table's width.
    return Group(header(view, now), table)


class LiveProgress:
    """A rich live table on a terminal; use as a context manager around the run."""

    def __init__(self, console: Console) -> None:
        self.view = RunView()
        self._console = console
        self._live = Live(
            console=console, refresh_per_second=8, transient=False, get_renderable=self._render
        )

    def _render(self) -> RenderableType:
        return render_view(
            self.view,
            self.view.last_ts if self.view.status != "running" else datetime.now().timestamp(),
        )

    def emit(self, event: Mapping[str, Any]) -> None:
        self.view.apply(event)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.refresh()
        self._live.__exit__(None, None, None)


class PlainProgress:
    """One plain line per notable event, for logs and pipes."""

    def __init__(self, out: TextIO) -> None:
        self.view = RunView(track_agents=False)  # its lines name no agent's state
        self._out = out
        self._lines: list[str] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()

    def emit(self, event: Mapping[str, Any]) -> None:
        self.view.apply(event)
        line = self._line(event)
        if line:
            # Written and flushed once per event-loop tick (at once outside a loop), not
            # once per line: an unbuffered stdout (PYTHONUNBUFFERED) costs a write each.
            self._lines.append(line)
            if len(self._lines) == 1 and not _call_soon(self._flush):
                self._flush()

    def _flush(self) -> None:
        lines, self._lines = self._lines, []
        if lines:
            self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def _line(self, e: Mapping[str, Any]) -> str | None:
        name = e.get("event")
        if name not in _PLAIN_EVENTS:
            return None  # step_queued, evidence_collected, ...: no line, nothing formatted
        ts = str(e.get("ts", ""))[11:23]
        stream = e.get("stream")
        step = e.get("step")
        if name == "run_started":
            return (
                f"{ts} run {e.get('run_id')} started: plan {e.get('plan')}, "
                f"{len(e.get('streams', []))} streams, {e.get('steps')} steps"
            )
        if name == "stream_started":
            return f"{ts} [{stream}] started ({e.get('steps')} steps)"
        if name == "step_waiting":
            return f"{ts} [{stream}] {step} ({e.get('agent')}) waits for " + "; ".join(
                e.get("waiting_for", [])
            )
        if name == "step_started":
            return f"{ts} [{stream}] {step} ({e.get('agent')}) started, attempt {e.get('attempt')}"
        if name == "step_finished":
            sv = self.view.streams.get(str(stream))
            count = f" [{sv.done}/{sv.total}]" if sv else ""
            text = f"{ts} [{stream}] {step} {e.get('status')} in {e.get('duration_s')}s{count}"
            if e.get("status") != "succeeded":
                text += f": {e.get('reason')}"
            tokens = format_tokens(e.get("usage"))
            return f"{text} (tokens: {tokens})" if tokens else text
        if name == "step_retrying":
            return f"{ts} [{stream}] {step} retrying: {e.get('message')}"
        if name == "gate_evaluated":
            verdict = "passed" if e.get("passed") else "FAILED"
            confidence = e.get("confidence")
            shown = f" at {confidence:.0%}" if isinstance(confidence, float) else ""
            missing = e.get("missing_evidence") or []
            return f"{ts} [{stream}] gate {verdict}{shown}" + (
                f"; missing evidence: {'; '.join(missing)}" if missing else ""
            )
        if name == "rollback_started":
            return f"{ts} [{stream}] rolling back ({e.get('reason')})"
        if name == "rollback_step_failed":
            return f"{ts} [{stream}] ROLLBACK STEP FAILED: {step}: {e.get('reason')}"
        if name == "rollback_finished":
            budget = e.get("budget_s")
            within = (
                ""
                if budget is None
                else (f", {'within' if e.get('within_budget') else 'OVER'} budget {budget:g}s")
            )
            return f"{ts} [{stream}] rollback {e.get('status')} in {e.get('duration_s')}s{within}"
        if name == "stream_finished":
            reason = f": {e.get('reason')}" if e.get("reason") else ""
            sv = self.view.streams.get(str(stream))
            tokens = format_tokens(sv.usage) if sv else ""
            return f"{ts} [{stream}] {e.get('status')}{reason}" + (
                f" (tokens: {tokens})" if tokens else ""
            )
        if name == "run_finished":
            tokens = format_tokens(self.view.usage)
            return f"{ts} run {e.get('run_id')} {e.get('status')}" + (
                f" (tokens: {tokens})" if tokens else ""
            )
        return None


def progress_sink(
    console: Console, out: TextIO, *, plain: bool = False
) -> LiveProgress | PlainProgress:
    """A live table on a terminal (unless ``plain``), plain lines to ``out`` otherwise."""
    return LiveProgress(console) if console.is_terminal and not plain else PlainProgress(out)
