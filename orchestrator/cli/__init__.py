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
start, so heavy optional parts (the MCP server, the web report) are imported inside the
commands that use them.
"""

from __future__ import annotations

import click

from foundation.status import EXIT_CODE_MEANINGS
from orchestrator.cli.control import agents, cancel, locks, status, submit, watch
from orchestrator.cli.history import analyze_command, evidence, report_
from orchestrator.cli.import_plan import import_
from orchestrator.cli.logs import logs
from orchestrator.cli.plan import package, schema, validate, verify_log
from orchestrator.cli.run import run
from orchestrator.cli.serve import daemon, mcp
from orchestrator.runs import tune_gc

__all__ = ["cli", "main"]

#: ``orchestrator --help``'s epilog: the exit-code table (``\b`` keeps click from rewrapping).
EPILOG = (
    "\b\nExit codes:\n"
    + "\n".join(f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())
    + "\n\n\b\nShell completion (bash):\n"
    + '  eval "$(_ORCHESTRATOR_COMPLETE=bash_source orchestrator)"'
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(package_name="orchestrator")
def cli() -> None:
    """Run phase plans: parallel streams of agents' steps under caps and locks."""
    tune_gc()


for _command in (
    validate,
    schema,
    run,
    package,
    import_,
    verify_log,
    analyze_command,
    evidence,
    daemon,
    submit,
    watch,
    status,
    agents,
    locks,
    cancel,
    logs,
    mcp,
    report_,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="orchestrator")
