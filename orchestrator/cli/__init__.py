"""The ``orchestrator`` command line (console script ``orchestrator = orchestrator.cli:main``,
also ``python -m orchestrator``).

Exit codes: one table, :data:`foundation.status.EXIT_CODE_MEANINGS`, printed as the
epilog of ``orchestrator --help`` (0 ok, 1 failed, 2 invalid, 3 no daemon, 4 refused,
5 cancelled, 130 interrupted). Every command that prints takes ``-o json|table``.
Errors print as one clear message naming the place and the fix, never as a traceback.

Owns the click commands, each at module level, grouped by what they need: plan and event
files only (:mod:`.plan`, :mod:`.import_plan`), a run in this process (:mod:`.run`), the run
store (:mod:`.history`), a running daemon through its control socket (:mod:`.control`), or
serving (:mod:`.serve`: the daemon, the MCP server); :mod:`._common` holds what they share.
The top of the import order: nothing in the project may import it. It must stay cheap to
start: :data:`COMMANDS` names each command's module, imported only when that command runs
(``--version`` imports none), and heavy parts a command needs only on some paths (the MCP
server, the web report, the context packages' tokenizer) are imported inside it. A test
(``tests/orchestrator/cli/test_lazy_imports.py``) keeps the Docker SDK, Redis, asyncpg,
tiktoken, ruamel and the analysis package out of ``--version``, ``validate`` and
``status``.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

import click

from foundation.status import EXIT_CODE_MEANINGS
from orchestrator.cli._exit import ExitNow
from orchestrator.cli._lazy import LazyGroup
from orchestrator.gc_tuning import tune_gc

__all__ = ["COMMANDS", "cli", "main"]

#: Every command: its name -> ``"module:attribute"``, imported only when it is invoked (a
#: command pays for its own imports, not for every other command's; see :mod:`._lazy`).
COMMANDS: dict[str, str] = {
    "validate": "orchestrator.cli.plan:validate",
    "schema": "orchestrator.cli.plan:schema",
    "package": "orchestrator.cli.plan:package",
    "verify-log": "orchestrator.cli.plan:verify_log",
    "import": "orchestrator.cli.import_plan:import_",
    "run": "orchestrator.cli.run:run",
    "analyze": "orchestrator.cli.history:analyze_command",
    "evidence": "orchestrator.cli.history:evidence",
    "report": "orchestrator.cli.history:report_",
    "daemon": "orchestrator.cli.serve:daemon",
    "mcp": "orchestrator.cli.serve:mcp",
    "submit": "orchestrator.cli.control:submit",
    "watch": "orchestrator.cli.control:watch",
    "status": "orchestrator.cli.control:status",
    "agents": "orchestrator.cli.control:agents",
    "locks": "orchestrator.cli.control:locks",
    "cancel": "orchestrator.cli.control:cancel",
    "agent-tools": "orchestrator.cli.agent_tools:agent_tools",
    "logs": "orchestrator.cli.logs:logs",
}

#: ``orchestrator --help``'s epilog: the exit-code table (``\b`` keeps click from rewrapping).
EPILOG = (
    "\b\nExit codes:\n"
    + "\n".join(f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    + "\n\n\b\nShell completion (bash):\n"
    + '  eval "$(_ORCHESTRATOR_COMPLETE=bash_source orchestrator)"'
)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
)
@click.version_option(package_name="orchestrator")
def cli() -> None:
    """Run phase plans: parallel streams of agents' steps under caps and locks."""
    tune_gc()


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="orchestrator")
    except ExitNow as done:
        # A client that is done: what the teardown would do for it is flushing its output
        # and running the atexit handlers (logging's, for one).
        code = 0 if done.code is None else done.code if isinstance(done.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        atexit._run_exitfuncs()
        os._exit(code)
    finally:
        # The interpreter's teardown collects garbage over every object still alive: with
        # the plan models, the store and the scheduler imported that took 0.3-1.4 s after a
        # command had finished (``submit --wait`` returned that long after run_finished).
        # Frozen objects are left out of those collections; each is still released as its
        # module is cleared, files are flushed and atexit handlers run as before.
        gc.freeze()
