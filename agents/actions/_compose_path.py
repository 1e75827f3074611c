"""Dotted paths into a docker-compose file (``a.b[2]["c.d"]``) and the files' digests.

Apart from :mod:`._compose_edit` (which needs ruamel.yaml), so that validating a plan's
``compose.patch`` steps does not import the round-trip YAML library.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["Key", "_sha", "parse_path"]

Key = str | int


_SEGMENT = re.compile(r"""\[(-?\d+)\]|\[(?:"([^"]*)"|'([^']*)')\]|([^.\[\]"']+)""")


def parse_path(path: str) -> list[Key]:
    """``a.b[2]["c.d"]`` -> ``["a", "b", 2, "c.d"]``; a bare ``.2`` stays the string ``"2"``
    (an index where a list is found there). Raises ValueError for a malformed path."""
    keys: list[Key] = []
    at = 0
    while at < len(path):
        if keys and path[at] == ".":
            at += 1
        match = _SEGMENT.match(path, at)
        if match is None or match.end() == at:
            raise ValueError(
                f"bad path {path!r} at character {at + 1}; write a.b.c, a.b[0] "
                'or a["key.with.dots"]'
            )
        index, double, single, bare = match.groups()
        keys.append(
            int(index)
            if index is not None
            else (double if double is not None else single if single is not None else bare)
        )
        at = match.end()
    if not keys:
        raise ValueError("empty path")
    return keys


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
