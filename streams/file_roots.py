"""The folders besides the run's working directory that a plan lets file actions use
(``files: {roots: {NAME: dir}}``), and the checks that keep each name meaning one folder.

A root is given relative to the plan file's folder (the run's working directory when the
plan is run from its file) or absolute. :func:`resolve_root` accepts it only when it is an
existing folder reached through no symlink (so the plan says exactly which folder it opens;
a link swapped in later does not move it), and :func:`resolve_roots` also when it neither
holds nor lies inside the working directory or another root: one file, one resource name
(``file:<path>`` or ``file@NAME:<path>``), so its locks and the stale-write guard cannot be
dodged by naming it twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from streams.model import Plan

__all__ = ["plan_roots", "resolve_root", "resolve_roots"]


def resolve_root(base: Path, declared: str) -> Path:
    """The absolute folder of root ``declared`` (relative to ``base``); ValueError with the
    reason when it is missing, not a folder or reached through a symlink."""
    if not declared or "\x00" in declared:
        raise ValueError("give a folder path")
    real_base = Path(os.path.realpath(base))
    given = Path(declared)
    lexical = Path(os.path.normpath(given if given.is_absolute() else real_base / given))
    if not lexical.exists():
        raise ValueError(f"{declared}: no such folder")
    if not lexical.is_dir():
        raise ValueError(f"{declared}: not a folder")
    real = Path(os.path.realpath(lexical))
    if real != lexical:
        raise ValueError(f"{declared}: leads through a symlink (to {real}); name the real folder")
    return real


def _nested(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def resolve_roots(
    base: Path, roots: Mapping[str, str], workdir: Path | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """(usable roots by name, reasons of the others by name) for ``roots`` relative to
    ``base``; a root that is, holds or lies inside ``workdir`` (default ``base``) or an
    earlier root is refused."""
    taken = [Path(os.path.realpath(workdir if workdir is not None else base))]
    usable: dict[str, Path] = {}
    refused: dict[str, str] = {}
    for name, declared in roots.items():
        try:
            path = resolve_root(base, declared)
        except ValueError as exc:
            refused[name] = str(exc)
            continue
        if _nested(path, taken[0]):
            refused[name] = (
                f"{declared}: is, holds or lies inside the working directory; "
                "files there are named by their path already"
            )
        elif any(_nested(path, other) for other in taken[1:]):
            refused[name] = f"{declared}: is, holds or lies inside another root"
        else:
            usable[name] = path
            taken.append(path)
    return usable, refused


def plan_roots(plan: Plan, workdir: Path) -> dict[str, Path]:
    """The usable roots of ``plan`` for a run in ``workdir`` (relative ones resolved against
    it: the plan file's folder, where runs of a plan file work). Roots refused here (the
    folder went away since the plan was validated, say) are left out: a call naming one is
    refused with the declared names."""
    if plan.files is None or not plan.files.roots:
        return {}
    return resolve_roots(workdir, plan.files.roots)[0]
