"""The daemon (``orchestrator daemon``) and its control socket, both ends.

Owns the long-running process: its life cycle and request handlers (:mod:`.service`), the
active runs with their store-first event pipelines (:mod:`.run_manager`), the control
socket server (:mod:`.control_socket`), JSON-RPC messages and dispatch (:mod:`.rpc`,
:mod:`.rpc_dispatch`), the answers' JSON views (:mod:`.views`), how a starting daemon makes
itself known (:mod:`.readiness`: pid file, sd_notify) and the client that the CLI, the MCP
server and the dashboard use to talk to it (:mod:`.client`).

Builds on the rest of ``orchestrator`` (settings, runs, scheduler, store, coordination,
analysis, web) and on ``agents``, ``streams`` and ``foundation``. Only the CLI, the MCP
server (through :class:`ControlClient`) and the dashboard it serves (``orchestrator.web``)
may import it; the scheduler, the coordination backends, the store, ``runs`` and ``events``
must not (``orchestrator run`` works without a daemon), and ``agents``,
``context_packages``, ``streams`` and ``foundation`` never do (``import-linter`` enforces
the order orchestrator -> agents -> context_packages -> streams -> foundation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.daemon.client import ControlClient

if TYPE_CHECKING:
    from orchestrator.daemon.service import Daemon, run_daemon

__all__ = ["ControlClient", "Daemon", "run_daemon"]


def __getattr__(name: str) -> Any:
    """``Daemon`` and ``run_daemon`` on first use: a client (``orchestrator status``) imports
    this package for :class:`ControlClient` and must not pay for the daemon's own imports
    (the scheduler, the store, the coordinators, the analysis)."""
    if name in ("Daemon", "run_daemon"):
        from orchestrator.daemon import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
