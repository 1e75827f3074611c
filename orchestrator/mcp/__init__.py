"""``orchestrator mcp``: the daemon's tools for an MCP client (Claude Code) over stdio.

Owns the MCP server (:mod:`.server`) and its tools' structured results (:mod:`.models`).
It is a client of a running daemon, not part of it: it reaches the daemon only through
:class:`~orchestrator.daemon.client.ControlClient`, and reads plans, analyses and evidence
with the same code the CLI uses. Only the CLI's ``mcp`` command imports it (the ``mcp``
library is heavy), so nothing else in ``orchestrator`` may; it must not be imported by
``agents``, ``context_packages``, ``streams`` or ``foundation`` either.
"""

from orchestrator.mcp.server import build_server, ensure_daemon, serve

__all__ = ["build_server", "ensure_daemon", "serve"]
