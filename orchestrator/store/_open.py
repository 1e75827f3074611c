"""Opening the run store a location names: a SQLite file, or a PostgreSQL DSN."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from orchestrator.store._dsn import POSTGRES_SCHEMES, redact_dsn
from orchestrator.store.base import RunStore
from orchestrator.store.errors import StoreError

__all__ = ["open_store", "store_location"]

DEFAULT_FILENAME = "runs.sqlite3"


def store_location(url_or_path: str | Path | None, *, state_dir: Path) -> Path | str:
    """The SQLite file (a Path) or the PostgreSQL DSN (a str) that ``url_or_path`` names.

    - None or ``""``: ``<state_dir>/runs.sqlite3``.
    - ``postgresql://...`` or ``postgres://...``: that DSN.
    - ``sqlite:///NAME`` (relative) or ``sqlite:////ABS/PATH``, or a plain path: that file;
      a relative one is taken inside ``state_dir`` (resolve a user's path before passing it
      if it should be relative to the working directory).

    Raises StoreError for any other scheme.
    """
    if url_or_path is None or url_or_path == "":
        return state_dir / DEFAULT_FILENAME
    if isinstance(url_or_path, Path):
        return url_or_path if url_or_path.is_absolute() else state_dir / url_or_path
    scheme = url_or_path.split("://", 1)[0].lower() if "://" in url_or_path else ""
    if scheme in POSTGRES_SCHEMES:
        return url_or_path
    if scheme == "sqlite":
        url_path = unquote(urlsplit(url_or_path).path)
        if url_path in ("", "/"):
            raise StoreError(
                url_or_path, "no file named", "use sqlite:///NAME or sqlite:////ABSOLUTE/PATH"
            )
        # sqlite:///runs.db is relative, sqlite:////srv/runs.db absolute (SQLAlchemy's form).
        file = Path(url_path[1:])
        return file if file.is_absolute() else state_dir / file
    if scheme:
        raise StoreError(
            redact_dsn(url_or_path),
            f"unsupported store scheme {scheme!r}",
            "use a file path, sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/DB",
        )
    file = Path(url_or_path).expanduser()
    return file if file.is_absolute() else state_dir / file


@asynccontextmanager
async def open_store(
    url_or_path: str | Path | None,
    *,
    state_dir: Path,
    timeout_s: float = 10.0,
    pg_schema: str = "orchestrator",
) -> AsyncIterator[RunStore]:
    """The run store at ``url_or_path`` (see :func:`store_location`), schema up to date,
    closed on exit. Every call on it, and opening it, has the deadline ``timeout_s``.

    Raises StoreError (StoreUnavailable if it cannot be reached).
    """
    location = store_location(url_or_path, state_dir=state_dir)
    store: RunStore
    if isinstance(location, Path):
        from orchestrator.store.sqlite import SqliteStore

        store = await SqliteStore.open(location, timeout_s=timeout_s)
    else:
        from orchestrator.store.postgres import PostgresStore

        store = await PostgresStore.open(location, schema=pg_schema, timeout_s=timeout_s)
    try:
        yield store
    finally:
        await store.aclose()
