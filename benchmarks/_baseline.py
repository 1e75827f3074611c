"""What the start-up and validation benchmarks share: another commit to compare with, and
child processes that load bytecode as an installed program does.

- :func:`baseline_checkout`: ``git archive REF`` unpacked into a temporary directory, run
  with this checkout's virtual environment (the current directory comes first on
  ``sys.path``, so run from there its packages shadow the editable install's);
- :func:`child_env`: this environment without ``PYTHONDONTWRITEBYTECODE`` (set on the
  shared machine), so that children write and then load ``__pycache__`` as an installed
  program does instead of compiling this project's modules from source in every
  measured process, which the libraries of a floor (compiled at install) never pay;
- :func:`warm_up`: one unmeasured run of a command, which writes those caches.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["baseline_checkout", "child_env", "warm_up"]

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def baseline_checkout(ref: str | None) -> Iterator[Path | None]:
    """The tree of commit ``ref`` in a temporary directory (removed after), or None."""
    if not ref:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="orch-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "archive", ref], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) without ``PYTHONDONTWRITEBYTECODE``."""
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
    """Run ``argv`` once, unmeasured, so that its bytecode caches exist; raises if it fails."""
    subprocess.run(list(argv), env=dict(env), cwd=cwd, capture_output=True, timeout=300, check=True)
