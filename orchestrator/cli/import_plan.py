"""``orchestrator import``: a Markdown phase plan to a plan file, with its mapping report.

The report goes to stderr for people, or as one JSON document on stdout with ``--json`` (the
plan's YAML then goes to ``-o``, or into the JSON as ``yaml`` when there is no ``-o``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from foundation.errors import OrchestratorError, PlanInvalid
from streams.agent_definitions import read_definitions
from streams.markdown_import import ImportResult, decode_markdown, import_markdown

__all__ = ["import_", "run_import"]


def _problems(error: OrchestratorError) -> list[dict[str, Any]]:
    if not isinstance(error, PlanInvalid):
        return [{"reason": str(error)}]
    return [
        {"path": p.path, "line": p.line, "column": p.column, "reason": p.reason, "fix": p.fix}
        for p in error.problems
    ]


def run_import(
    markdown_file: Path, output: Path | None, as_json: bool, agents_dir: Path | None
) -> None:
    """Import ``markdown_file``; exits with the error's code when nothing could be made."""
    folder = agents_dir if agents_dir is not None else markdown_file.parent / ".claude" / "agents"
    definitions, definition_problems = read_definitions(folder)
    text, encoding = decode_markdown(markdown_file.read_bytes())
    try:
        result = import_markdown(text, str(markdown_file), definitions=definitions)
    except OrchestratorError as exc:
        if as_json:
            click.echo(json.dumps({"source": str(markdown_file), "error": _problems(exc)}))
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    if output is not None:
        output.write_text(result.yaml_text, encoding="utf-8")
    elif not as_json:
        click.echo(result.yaml_text, nl=False)
    target = output or "stdout"
    if as_json:
        payload: dict[str, Any] = {
            "output": str(output) if output is not None else None,
            "encoding": encoding,
            "summary": result.summary(),
            "agents_from": str(folder) if definitions else None,
            "definition_problems": [str(p) for p in definition_problems],
            "needs_driver": [str(p) for p in result.needs_driver],
            **result.report.as_dict(),
        }
        if output is None:
            payload["yaml"] = result.yaml_text
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"imported {markdown_file} -> {target}: {result.summary()}", err=True)
    if encoding != "utf-8":
        click.echo(f"{markdown_file}: not UTF-8, read as {encoding}", err=True)
    if definitions:
        click.echo(f"agents defined in {folder}: {', '.join(sorted(definitions))}", err=True)
    for problem in definition_problems:
        click.echo(f"skipped agent definition {problem}", err=True)
    report = result.report.render()
    if report:
        click.echo(report, err=True)
    _next(result, target)


def _next(result: ImportResult, target: Path | str) -> None:
    names = [p.reason.split("'")[1] for p in result.needs_driver if "'" in p.reason]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    click.echo(
        f"next: give {len(names)} agent(s) a driver ({shown}) in {target}, then "
        "`orchestrator validate` and `orchestrator analyze` the plan",
        err=True,
    )


@click.command("import")
@click.argument("markdown_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the plan here (default: stdout).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the import report as JSON on stdout.")
@click.option(
    "--agents-dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Claude Code agent definitions (*.md) to take agents from "
    "(default: .claude/agents beside the document).",
)
def import_(
    markdown_file: Path, output: Path | None, as_json: bool, agents_dir: Path | None
) -> None:
    """Turn a Markdown phase plan (like the users' Phase 2 document) into a plan file.

    Everything it could not map is reported on stderr with its line number.
    """
    run_import(markdown_file, output, as_json, agents_dir)
