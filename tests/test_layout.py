"""The layout rules of the README's "Layout" section that a linter does not check.

import-linter (``./scripts/test``) checks the import order itself; these check the rest:
no module passes 600 lines, and each package's docstring says what it must not import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "agents", "context_packages", "streams", "foundation")
MAX_LINES = 600
_SCOPE = re.compile(
    r"\b(must\s+not|may\s+not|never|nothing)\b.{0,80}\bimport|\bimport\b.{0,120}\bnever\b",
    re.I | re.S,
)


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_packages_hold_modules() -> None:
    assert len(_modules()) > 100  # the glob sees the tree, so the checks below are real


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_passes_600_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines; split it by concept"


@pytest.mark.parametrize(
    "init",
    sorted(p for p in _modules() if p.name == "__init__.py"),
    ids=lambda p: str(p.parent.relative_to(ROOT)),
)
def test_each_package_says_what_it_must_not_import(init: Path) -> None:
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
    assert _SCOPE.search(doc), (
        f"{init.relative_to(ROOT)}: the docstring should say what the package owns and "
        "what it must not import"
    )
