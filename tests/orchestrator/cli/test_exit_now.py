"""A command that raises ExitNow ends the process at once, with its code, its output
flushed and the atexit handlers run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli._exit import ExitNow

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import atexit, sys
import click
import orchestrator.cli as package
from orchestrator.cli._exit import ExitNow

marker = sys.argv[1]
atexit.register(lambda: open(marker, "w").write("atexit ran"))

@click.command()
def done():
    sys.stdout.write("on stdout, buffered")  # a pipe: block-buffered until flushed
    sys.stderr.write("on stderr")
    raise ExitNow(5)

package.cli = done
sys.argv = ["orchestrator"]
package.main()
"""


def test_exit_now_keeps_the_code_the_output_and_the_atexit_handlers(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(marker)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 5, done.stderr
    assert done.stdout == "on stdout, buffered"
    assert done.stderr == "on stderr"
    assert marker.read_text() == "atexit ran"


def test_under_click_s_test_runner_it_is_an_ordinary_exit() -> None:
    import click

    @click.command()
    def done() -> None:
        click.echo("bye")
        raise ExitNow(3)

    result = CliRunner().invoke(done)
    assert result.exit_code == 3
    assert result.output == "bye\n"
