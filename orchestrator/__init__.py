"""The orchestrator: runs phase plans under caps and locks, and everything around a run.

Owns the scheduler and step runner (``scheduler``, ``step_runner``, gates, evidence matching,
rollback), how a run is assembled (``runs``) and what it emits (``events``, ``event_relay``,
``progress``), the coordination backends (:mod:`.coordination`: in-process and
:mod:`.coordination.redis`), the run store (:mod:`.store`), the predictions before a run
(:mod:`.analysis`), ``verify-log``, the settings and the logging configuration; on top of
those the daemon and its control socket (:mod:`.daemon`), the dashboard (:mod:`.web`), the
MCP server (:mod:`.mcp`) and the command line (:mod:`.cli`).

The top layer of the import order ``orchestrator -> agents -> context_packages -> streams ->
foundation`` (``import-linter`` enforces it in CI): it may import all of those, and none of
them may import it. Inside it, what a run is made of never imports the CLI, the daemon, the
MCP server or the dashboard (a second contract).
"""

from foundation.errors import OrchestratorError

__version__ = "0.1.0"

__all__ = ["OrchestratorError", "__version__"]
