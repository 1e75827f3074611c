"""The daemon's web dashboard: a Starlette app served by uvicorn inside the daemon's task
group (it stops with the daemon), behind a bearer token kept in ``<state-dir>/http-token``.

Pages: ``/`` (runs, filters ``?status=`` and ``?plan=``), ``/runs/{id}`` (the run page with
its Gantt timeline), ``/runs/{id}/events`` (server-sent events: the run's stored events,
then live ones from the RunManager subscription, the same feed as ``orchestrator watch``),
``/metrics`` (Prometheus, see orchestrator.web.metrics) is served when :func:`build_app` is
given the daemon's :class:`DaemonMetrics`, as :func:`serve_http` does.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import structlog
import uvicorn
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from foundation.errors import OrchestratorError
from orchestrator.daemon.rpc import AgentsListParams, LocksListParams
from orchestrator.web.locks_page import render_locks_page
from orchestrator.web.metrics import DaemonMetrics, metrics_route
from orchestrator.web.report import CSS, read_all_events, render_parts, render_report

if TYPE_CHECKING:
    from collections.abc import Iterator

    from orchestrator.daemon import Daemon

_log = structlog.get_logger("orchestrator.web")
COOKIE = "orchestrator_token"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def create_token(path: Path) -> str:
    """A fresh random token written to ``path`` with mode 0600 from the start (O_EXCL)."""
    token = secrets.token_urlsafe(32)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def parse_address(address: str, *, allow_remote: bool) -> tuple[str, int]:
    """``HOST:PORT`` checked; a non-loopback host only with ``allow_remote``."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise OrchestratorError(f"--http {address!r}: use HOST:PORT, e.g. 127.0.0.1:8765")
    if host not in _LOOPBACK and not allow_remote:
        raise OrchestratorError(
            f"--http {address!r}: the dashboard is served over plain HTTP; bind 127.0.0.1 "
            "(and tunnel), or pass --http-allow-remote to expose it on purpose"
        )
    return host, int(port)


def _authorised(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
    return secrets.compare_digest(given.encode(), token.encode())


def build_app(
    daemon: Daemon,
    token: str,
    extra_routes: Sequence[BaseRoute] = (),
    *,
    metrics: DaemonMetrics | None = None,
) -> _TokenGate:
    """The dashboard app over ``daemon``; ``extra_routes`` (and ``/metrics`` when given
    ``metrics``) sit behind the same token."""

    async def runs_page(request: Request) -> Response:
        status = request.query_params.get("status") or None
        plan = request.query_params.get("plan") or None
        runs = await daemon.store.list_runs(limit=200, statuses=[status] if status else None)  # type: ignore[list-item]
        rows = "".join(
            f'<tr class="run"><td><a href="/runs/{escape(r.run_id)}">{escape(r.run_id)}</a></td>'
            f"<td>{escape(r.plan)}</td><td>{escape(r.status)}</td>"
            f"<td>{escape(r.started_at.isoformat() if r.started_at else '')}</td>"
            f"<td>{_duration(r.started_at, r.finished_at)}</td></tr>"
            for r in runs
            if plan is None or r.plan == plan
        )
        return HTMLResponse(
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Runs</title>'
            f"<style>{CSS}</style></head><body>"
            '<p><a href="/locks">locks, class slots and agents</a> &middot; '
            '<a href="/metrics">metrics</a></p><h1>Runs</h1>'
            '<form><input name="status" placeholder="status">'
            '<input name="plan" placeholder="plan"><button>filter</button></form>'
            "<table><tr><th>run</th><th>plan</th><th>status</th><th>start</th>"
            f"<th>duration</th></tr>{rows}</table></body></html>"
        )

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        run = await daemon.store.get_run(run_id)
        if run is None:
            return HTMLResponse(f"no run {escape(run_id)}; see the runs page at /", status_code=404)
        events = await read_all_events(daemon.store, run_id)
        if run_id not in daemon.runs.active:
            return HTMLResponse(render_report(run, events, dashboard=True))
        after = int(events[-1]["seq"]) if events else 0
        # Patches for events after this page's last one replace the parts in place.
        live = (
            f"<script>const s=new EventSource(location.pathname+'/live?after={after}');"
            "s.addEventListener('patch',e=>{const p=JSON.parse(e.data);"
            "for(const k in p){const el=document.getElementById(k);if(el)el.innerHTML=p[k]}});"
            "s.addEventListener('done',()=>s.close());</script>"
        )
        return HTMLResponse(render_report(run, events, live=live, dashboard=True, now=time.time()))

    async def run_live(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if run_id not in daemon.runs.active and await daemon.store.get_run(run_id) is None:
            return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)
        raw_after = request.query_params.get("after", "0")
        after = int(raw_after) if raw_after.isdigit() else 0
        return StreamingResponse(_patches(daemon, run_id, after), media_type="text/event-stream")

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if run_id not in daemon.runs.active and await daemon.store.get_run(run_id) is None:
            return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)
        raw_after = request.query_params.get("after", "0")
        after = int(raw_after) if raw_after.isdigit() else 0
        return StreamingResponse(_sse(daemon, run_id, after), media_type="text/event-stream")

    async def api_runs(request: Request) -> Response:
        return JSONResponse(await daemon.runs_list(_params(request), None))  # type: ignore[arg-type]

    async def locks_page(request: Request) -> Response:
        locks = await daemon.locks_list(LocksListParams(), None)  # type: ignore[arg-type]
        agents = await daemon.agents_list(AgentsListParams(), None)  # type: ignore[arg-type]
        tokens = metrics.tokens() if metrics is not None else {}
        return HTMLResponse(render_locks_page(locks, agents, tokens))

    async def api_locks(request: Request) -> Response:
        return JSONResponse(await daemon.locks_list(LocksListParams(), None))  # type: ignore[arg-type]

    routes: list[BaseRoute] = [
        Route("/locks", locks_page),
        Route("/api/locks", api_locks),
        Route("/", runs_page),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/events", run_events),
        Route("/runs/{run_id}/live", run_live),
        Route("/api/runs", api_runs),
        *([metrics_route(daemon, metrics)] if metrics is not None else []),
        *extra_routes,
    ]
    return _TokenGate(Starlette(routes=routes), token)


class _TokenGate:
    """ASGI wrapper: 401 without the token; ``?token=`` sets the cookie and redirects."""

    def __init__(self, app: Starlette, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.query_params.get("token")
        response: Response | None = None
        if given is not None and secrets.compare_digest(given.encode(), self.token.encode()):
            query = "&".join(
                f"{k}={v}" for k, v in request.query_params.multi_items() if k != "token"
            )
            response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        elif not _authorised(request, self.token):
            response = Response(
                "401: give the token from <state-dir>/http-token as "
                "'Authorization: Bearer TOKEN' or once as ?token=TOKEN\n",
                status_code=401,
                media_type="text/plain",
            )
        if response is not None:
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _params(request: Request) -> Any:
    from orchestrator.daemon.rpc import RunsListParams

    status = request.query_params.getlist("status")
    return RunsListParams.model_validate({"limit": 200, **({"status": status} if status else {})})


def _duration(start: Any, end: Any) -> str:
    """``12.3 s``; a run still going counts to now (``12.3 s so far``)."""
    if not start:
        return ""
    if end:
        return f"{(end - start).total_seconds():.1f} s"
    return f"{(datetime.now(UTC) - start).total_seconds():.1f} s so far"


async def _sse(daemon: Daemon, run_id: str, after: int = 0) -> AsyncIterator[str]:
    """Stored events after ``after``, then live ones without gap or duplicate (by ``seq``)."""
    active = daemon.runs.active.get(run_id)
    subscription = daemon.runs.subscribe(active) if active is not None else None
    try:
        last = after
        for event in await read_all_events(daemon.store, run_id):
            if int(event["seq"]) > last:
                last = int(event["seq"])
                yield _frame(event)
        if subscription is not None:
            async for event in subscription.receive:
                if int(event["seq"]) > last:
                    last = int(event["seq"])
                    yield _frame(event)
        yield "event: run_finished\ndata: {}\n\n"
    finally:
        if subscription is not None:
            subscription.close()


#: Patches of a live page: at most one per this many seconds (a burst of events is one
#: re-render); with no event for PATCH_IDLE_S, one anyway so elapsed times move on.
PATCH_EVERY_S = 0.25
PATCH_IDLE_S = 1.0


async def _patches(daemon: Daemon, run_id: str, after: int) -> AsyncIterator[str]:
    """``patch`` events (the run page's parts, rendered from every event so far) while the
    run is live, then ``done``. The first patch covers whatever came after ``after``; a
    watcher that falls behind (and is dropped by the pipeline) catches up from the store."""
    events: list[dict[str, Any]] = []
    sent = after
    while True:
        active = daemon.runs.active.get(run_id)
        # Subscribed before reading the store: no event falls between the two.
        subscription = daemon.runs.subscribe(active) if active is not None else None
        try:
            events.extend(await _after(daemon, run_id, int(events[-1]["seq"]) if events else 0))
            if events and int(events[-1]["seq"]) > sent:
                sent = int(events[-1]["seq"])
                yield _patch(events)
            if subscription is None:
                break
            while True:
                fresh, batch = False, []
                with anyio.move_on_after(PATCH_IDLE_S):
                    batch = [await subscription.receive.receive()]
                    fresh = True
                    with suppress(anyio.WouldBlock):
                        while True:
                            batch.append(subscription.receive.receive_nowait())
                last = int(events[-1]["seq"]) if events else 0
                events.extend(e for e in batch if int(e["seq"]) > last)
                sent = int(events[-1]["seq"]) if events else sent
                yield _patch(events)  # without a fresh event: elapsed times move on
                if fresh:
                    await anyio.sleep(PATCH_EVERY_S)
        except anyio.EndOfStream:
            continue  # the run ended, or this watcher fell behind: catch up from the store
        finally:
            if subscription is not None:
                subscription.close()
    yield "event: done\ndata: {}\n\n"


async def _after(daemon: Daemon, run_id: str, seq: int) -> list[dict[str, Any]]:
    return [e async for e in daemon.runs.stored_events(run_id, after_seq=seq)]


def _patch(events: list[dict[str, Any]]) -> str:
    return f"event: patch\ndata: {json.dumps(render_parts(events, now=time.time()))}\n\n"


def _frame(event: dict[str, Any]) -> str:
    return f"id: {event['seq']}\ndata: {json.dumps(event, default=str)}\n\n"


class _Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:  # the daemon owns SIGTERM/SIGINT
        yield


async def serve_http(
    daemon: Daemon,
    host: str,
    port: int,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the dashboard and ``/metrics`` until cancelled; the token goes to
    ``<state-dir>/http-token``. Runs started from now on feed the metrics."""
    token_file = daemon.settings.state_dir / "http-token"
    token = create_token(token_file)
    metrics = DaemonMetrics()
    daemon.runs.sinks.append(metrics)
    config = uvicorn.Config(
        build_app(daemon, token, extra_routes, metrics=metrics),
        host=host,
        port=port,
        log_config=None,
        access_log=False,  # its lines would carry ?token=
        lifespan="off",
    )
    server = _Server(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OrchestratorError(
            f"--http {host}:{port}: cannot bind ({exc.strerror}); pick a free port"
        ) from None
    sock.listen(128)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        _log.info("http_started", url=f"http://{host}:{port}/", token_file=str(token_file))
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            daemon.runs.sinks.remove(metrics)
            server.should_exit = True
