"""``orchestrator mcp``: the daemon's tools for an MCP client (Claude Code) over stdio.

A thin client of a running daemon (the control socket, :class:`ControlClient`): runs are
submitted, followed, listed and cancelled through it. Plan checks (validate, analyze,
import, context packages) run here with the same code the daemon and CLI use; evidence and
event histories are read from the run store the daemon writes (as ``orchestrator evidence``
does). Every failure is an MCP tool error (``isError``) carrying the message and its fix,
never a traceback. Imported only by the ``mcp`` command, so the CLI stays cheap to start.
"""

import contextlib
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import orjson
import structlog
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import Resource, ToolAnnotations
from pydantic import Field

from agents.plans import load_plan_text
from context_packages import render_package
from foundation.errors import (
    DaemonError,
    DaemonUnavailable,
    OrchestratorError,
    PlanInvalid,
    UsageError,
    first_orchestrator_error,
)
from foundation.status import RunStatus
from orchestrator.daemon.client import ControlClient
from orchestrator.evidence_view import evidence_json, load_evidence
from orchestrator.mcp.models import (
    AgentsResult,
    AnalysisResult,
    CancelResult,
    ContextPackageResult,
    EvidenceResult,
    ImportResult,
    LocksResult,
    RunDetail,
    RunList,
    SubmitResult,
    ValidateResult,
    WaitResult,
)
from orchestrator.settings import Settings
from orchestrator.store import open_store
from streams.markdown_import import decode_markdown, import_markdown
from streams.model import Plan

__all__ = ["build_server", "ensure_daemon", "serve"]

log = structlog.get_logger("orchestrator.mcp")

RUN_EVENTS_URI = "orchestrator://runs/{run_id}/events"
RUNS_URI = "orchestrator://runs"
#: How many recent runs ``resources/list`` offers one events resource for.
RECENT_RUNS = 20
#: The most events one events resource returns (the store pages them 1000 at a time).
MAX_EVENTS = 100_000
#: Bound of the health check that decides whether to start a daemon.
HEALTH_TIMEOUT_S = 5.0
#: Between two health checks of a daemon being started.
HEALTH_POLL_S = 0.1
START_DAEMON_TIMEOUT_S = 30.0
ANALYSIS_TIMEOUT_S = 120.0
LIST_TIMEOUT_S = 5.0

PathArg = Annotated[
    str | None, Field(description="A plan file (YAML or JSON), relative to the server's cwd.")
]
TextArg = Annotated[str | None, Field(description="The plan's content, instead of a path.")]
RunIdArg = Annotated[str, Field(min_length=1, max_length=128, description="A run id.")]

INSTRUCTIONS = (
    "Orchestrator: run phase plans (parallel streams of agents' steps under resource caps "
    "and locks) on the orchestrator daemon. validate_plan, then submit_plan; follow a run "
    "with wait_run (progress notifications) or run_status; read evidence and each agent's "
    "context_package. A run's events are the resource orchestrator://runs/{run_id}/events."
)


def _message(error: OrchestratorError) -> str:
    if isinstance(error, DaemonError):
        data = error.data if isinstance(error.data, dict) else {}
        problems = [str(p) for p in data.get("problems", [])]
        return "\n".join([f"daemon refused (code {error.code}): {error.message}", *problems])
    if isinstance(error, DaemonUnavailable):
        return f"{error} -- or restart this MCP server with `orchestrator mcp --start-daemon`"
    return str(error)


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """Turn the orchestrator's errors into MCP tool errors with their message and fix."""
    try:
        yield
    except (OrchestratorError, ExceptionGroup) as exc:
        error = first_orchestrator_error(exc)
        if error is None:
            raise
        raise ToolError(_message(error)) from None


def _plan_source(path: str | None, text: str | None, what: str = "path") -> tuple[str, str]:
    """(label, text) of a plan given as a path or as text (exactly one of them)."""
    if (path is None) == (text is None):
        raise UsageError(
            f"give either {what} or text, not {'both' if path else 'neither'} "
            "(fix: pass exactly one of them)"
        )
    if text is not None:
        return "<text>", text
    assert path is not None
    file = Path(path).expanduser()
    try:
        return str(file), file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanInvalid.one(file, 0, 0, "no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanInvalid.one(file, 0, 0, f"cannot read the file: {exc}", "") from None


def _absolute(path: str) -> str:
    return str(Path(path).resolve())


def _read_markdown(path: str) -> tuple[str, str]:
    file = Path(path).expanduser()
    try:
        content, _ = decode_markdown(file.read_bytes())
    except OSError as exc:
        raise UsageError(
            f"{file}: cannot read the Markdown plan: {exc.strerror} (fix: check the path)"
        ) from None
    return str(file), content


def _load(path: str | None, text: str | None) -> tuple[str, str, Plan]:
    label, content = _plan_source(path, text)
    plan, _ = load_plan_text(content, label)
    return label, content, plan


class OrchestratorMCP(MCPServer[Any]):
    """The MCP server; ``resources/list`` also offers each recent run's events."""

    def __init__(self, settings: Settings, client: ControlClient) -> None:
        super().__init__(
            name="orchestrator", instructions=INSTRUCTIONS, warn_on_duplicate_tools=True
        )
        self.orch_settings = settings
        self.client = client

    async def list_resources(self) -> list[Resource]:
        resources = await super().list_resources()
        try:
            # A short deadline: a listing must not hang on a stuck daemon.
            lister = ControlClient(self.client.socket_path, timeout_s=LIST_TIMEOUT_S)
            reply = await lister.call("runs.list", {"limit": RECENT_RUNS})
        except OrchestratorError:  # no daemon: the static resources only
            return resources
        for run in reply.get("runs", []):
            resources.append(
                Resource(
                    uri=RUN_EVENTS_URI.format(run_id=run["run_id"]),
                    name=f"run {run['run_id']} events",
                    description=f"plan {run['plan']}: {run['status']}",
                    mime_type="application/json",
                )
            )
        return resources


async def follow_run(
    client: ControlClient, run_id: str, timeout_s: float, ctx: Context | None
) -> WaitResult:
    """Follow ``run_id`` through the daemon's event subscription until it ends or
    ``timeout_s`` passes, reporting each finished step as MCP progress."""
    total: int | None = None
    steps: dict[str, tuple[str, str]] = {}
    status, events, finished = "unknown", 0, False
    with anyio.move_on_after(timeout_s):
        async for event in client.subscribe(run_id, from_start=True):
            events += 1
            kind = event.get("event")
            if kind == "run_started":
                total = int(event.get("steps") or 0) or None
            elif kind == "step_finished":
                key = f"{event.get('stream')}/{event.get('step')}"
                steps[key] = (str(event.get("status")), str(event.get("reason") or ""))
                if ctx is not None:
                    await ctx.report_progress(len(steps), total, f"{key}: {event.get('status')}")
            elif kind == "run_finished":
                status, finished = str(event.get("status")), True
    if not finished:
        status = str((await client.call("runs.get", {"run_id": run_id}))["status"])
    return WaitResult(
        run_id=run_id,
        status=status,
        finished=finished,
        steps_done=len(steps),
        steps_total=total,
        events=events,
        failed_steps=[
            f"{key}: {st}: {reason}".rstrip(": ")
            for key, (st, reason) in steps.items()
            if st != "succeeded"
        ],
    )


def build_server(settings: Settings, client: ControlClient | None = None) -> OrchestratorMCP:
    """The MCP server with every tool and resource, talking to the daemon at the
    settings' socket."""
    client = client or ControlClient(settings.socket_path())
    server = OrchestratorMCP(settings, client)
    readonly = ToolAnnotations(read_only_hint=True)

    @server.tool(annotations=readonly)
    async def validate_plan(path: PathArg = None, text: TextArg = None) -> ValidateResult:
        """Check a plan (a file path or its text) without running it: every problem as
        file:line:column: reason (fix: ...)."""
        with _tool_errors():
            label = "<text>" if path is None else path
            try:
                label, content = _plan_source(path, text)
                plan, _ = load_plan_text(content, label)
            except PlanInvalid as exc:
                return ValidateResult(
                    valid=False, source=label, problems=[str(p) for p in exc.problems]
                )
        return ValidateResult(
            valid=True,
            source=label,
            plan=plan.plan,
            streams=len(plan.streams),
            steps=plan.total_steps(),
            agents=len(plan.agents),
        )

    @server.tool()
    async def submit_plan(
        ctx: Context,
        path: PathArg = None,
        text: TextArg = None,
        wait: Annotated[bool, Field(description="Follow the run to its end.")] = False,
        timeout_s: Annotated[
            float, Field(gt=0, le=86400, description="With wait: how long to follow it.")
        ] = 3600,
        force: Annotated[bool, Field(description="Run even below min_confidence.")] = False,
    ) -> SubmitResult:
        """Submit a plan to the daemon; returns its run id (and, with wait, how it ended,
        reporting progress per finished step)."""
        with _tool_errors():
            label, content = _plan_source(path, text)
            plan_path = _absolute(label) if path is not None else "<mcp text>"
            reply = await client.call(
                "submit", {"plan_text": content, "plan_path": plan_path, "force": force}
            )
            result = SubmitResult(run_id=reply["run_id"], plan=reply["plan"])
            if wait:
                result.wait = await follow_run(client, result.run_id, timeout_s, ctx)
            return result

    @server.tool(annotations=readonly)
    async def run_status(run_id: RunIdArg) -> RunDetail:
        """A run's status with its streams and steps (live counts while it runs)."""
        with _tool_errors():
            return RunDetail.model_validate(await client.call("runs.get", {"run_id": run_id}))

    @server.tool(annotations=readonly)
    async def list_runs(
        status: Annotated[list[RunStatus] | None, Field(description="Only these statuses.")] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 20,
    ) -> RunList:
        """Recent runs, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = list(status)
        with _tool_errors():
            return RunList.model_validate(await client.call("runs.list", params))

    @server.tool(annotations=readonly)
    async def wait_run(
        ctx: Context,
        run_id: RunIdArg,
        timeout_s: Annotated[float, Field(gt=0, le=86400, description="Longest wait.")] = 600,
    ) -> WaitResult:
        """Wait for a run to end (or timeout_s), sending a progress notification per
        finished step; finished is false if the time ran out first."""
        with _tool_errors():
            return await follow_run(client, run_id, timeout_s, ctx)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True))
    async def cancel_run(run_id: RunIdArg) -> CancelResult:
        """Cancel a run: its running steps are stopped and how each ended is recorded."""
        with _tool_errors():
            return CancelResult.model_validate(await client.call("runs.cancel", {"run_id": run_id}))

    @server.tool(annotations=readonly)
    async def agents(
        run_id: Annotated[str | None, Field(description="Only this run's agents.")] = None,
    ) -> AgentsResult:
        """Each agent of the active runs: state, current steps, locks held, what it waits
        for."""
        with _tool_errors():
            reply = await client.call("agents.list", {"run_id": run_id} if run_id else {})
            return AgentsResult.model_validate(reply)

    @server.tool(annotations=readonly)
    async def locks() -> LocksResult:
        """Lock holders with fencing tokens, queues per resource, class slots in use."""
        with _tool_errors():
            return LocksResult.model_validate(await client.call("locks.list"))

    @server.tool(annotations=readonly)
    async def context_package(
        path: Annotated[str, Field(description="The plan file.")],
        agent: Annotated[str, Field(min_length=1, description="The agent's name.")],
    ) -> ContextPackageResult:
        """The context package an agent receives for a plan (its Markdown and what was
        kept or cut to fit its token limit); nothing runs."""
        with _tool_errors():
            _, _, plan = _load(path, None)
            document = render_package(plan, agent, as_json=True)
            return ContextPackageResult.model_validate_json(document)

    @server.tool(annotations=readonly)
    async def evidence(
        run_id: RunIdArg,
        stream: Annotated[str | None, Field(description="Only this stream's evidence.")] = None,
    ) -> EvidenceResult:
        """A run's evidence: what each step checked, from which source, verified by the
        daemon or claimed by an agent; and each gate's verdict."""
        with _tool_errors():
            async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
                report = await load_evidence(store, run_id, stream=stream)
            return EvidenceResult.model_validate(evidence_json(report))

    @server.tool(annotations=readonly)
    async def analyze_plan(
        path: Annotated[str, Field(description="The plan file.")],
    ) -> AnalysisResult:
        """A plan's strategic decision matrix: per stream its success probability (updated
        by recorded runs), risk and timeline; the expected makespan and critical path."""
        # Imported here: the schedule simulation (trio's test clock) costs 0.8 s at start-up.
        from orchestrator import analysis

        with _tool_errors():
            _, _, plan = _load(path, None)
            async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
                history = await analysis.load_history(store, plan)
            # The schedule simulation runs its own event loop: in a worker thread.
            simulate = functools.partial(
                analysis.analyze,
                plan,
                history,
                aging_s=settings.aging_s,
                starve_after_s=settings.starve_after_s,
            )
            with anyio.fail_after(ANALYSIS_TIMEOUT_S):
                result = await anyio.to_thread.run_sync(simulate, abandon_on_cancel=True)
            return AnalysisResult(plan=plan.plan, analysis=analysis.analysis_json(result))

    @server.tool(annotations=readonly)
    async def import_plan(
        markdown_path: Annotated[str | None, Field(description="A Markdown phase plan.")] = None,
        text: Annotated[str | None, Field(description="Its content, instead.")] = None,
    ) -> ImportResult:
        """Turn a Markdown phase plan into a plan file (YAML text, not written anywhere),
        with a report of what could not be mapped and what was assumed."""
        with _tool_errors():
            if markdown_path is not None and text is None:
                label, content = _read_markdown(markdown_path)
            else:
                label, content = _plan_source(markdown_path, text, "markdown_path")
            result = import_markdown(content, label)
            return ImportResult(
                source=label,
                plan=result.plan.plan,
                summary=result.summary(),
                yaml_text=result.yaml_text,
                report=result.report.as_dict(),
            )

    @server.resource(RUNS_URI, name="runs", mime_type="application/json")
    async def runs_resource() -> str:
        """The recent runs (newest first) with their status."""
        try:
            reply = await client.call("runs.list", {"limit": 50})
        except OrchestratorError as exc:
            raise ResourceError(_message(exc)) from None
        return json.dumps(reply, indent=2)

    @server.resource(RUN_EVENTS_URI, name="run events", mime_type="application/json")
    async def run_events(run_id: str) -> str:
        """A run's event history as stored, in seq order (a JSON array)."""
        try:
            events = await read_run_events(settings, run_id)
        except OrchestratorError as exc:
            raise ResourceError(_message(exc)) from None
        return orjson.dumps(events).decode()

    return server


async def read_run_events(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """Every stored event of ``run_id`` (at most MAX_EVENTS); UsageError for no such run."""
    events: list[dict[str, Any]] = []
    async with open_store(settings.store_url(), state_dir=settings.state_dir) as store:
        if await store.get_run(run_id) is None:
            raise UsageError(f"no run {run_id!r} (fix: list_runs gives the run ids)")
        while len(events) < MAX_EVENTS:
            page = await store.read_events(
                run_id, after_seq=int(events[-1]["seq"]) if events else 0, limit=1000
            )
            events.extend(page)
            if len(page) < 1000:
                break
    return events


async def ensure_daemon(settings: Settings) -> str | None:
    """Start a detached daemon if none answers on the socket; return a line saying where
    it runs and logs (None if one was already running)."""
    client = ControlClient(settings.socket_path(), timeout_s=HEALTH_TIMEOUT_S)
    with contextlib.suppress(DaemonUnavailable):
        await client.call("health")
        return None
    process, log_path = _spawn_daemon(settings)
    with anyio.move_on_after(START_DAEMON_TIMEOUT_S):
        while process.poll() is None:
            with contextlib.suppress(DaemonUnavailable):
                await client.call("health")
                log.info("daemon_started", pid=process.pid, log=str(log_path))
                return (
                    f"started a daemon (pid {process.pid}) on {settings.socket_path()}; "
                    f"its log: {log_path}"
                )
            await anyio.sleep(HEALTH_POLL_S)
    raise DaemonUnavailable(
        str(settings.socket_path()),
        f"the daemon started by --start-daemon did not answer within "
        f"{START_DAEMON_TIMEOUT_S:g}s (exit code {process.poll()}); see its log {log_path}",
    )


def _spawn_daemon(settings: Settings) -> tuple[subprocess.Popen[bytes], Path]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "daemon.log"
    command = [sys.executable, "-m", "orchestrator", "daemon"]
    command += ["--socket", str(settings.socket_path()), "--state-dir", str(settings.state_dir)]
    with log_path.open("ab") as log_file:  # the daemon keeps its own descriptor
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # detached: it outlives this MCP server
            env=os.environ.copy(),
        )
    return process, log_path


async def serve(settings: Settings, start_daemon: bool = False) -> None:
    """Run the MCP server on stdin/stdout until the client closes it."""
    if start_daemon:
        line = await ensure_daemon(settings)
        if line is not None:
            sys.stderr.write(f"orchestrator mcp: {line}\n")
            sys.stderr.flush()
    await build_server(settings).run_stdio_async()
