"""Where a store lives: locations, DSN redaction, and the schema lists (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.store import SCHEMA_VERSION, StoreError, redact_dsn, store_location
from orchestrator.store._dsn import dsn_secrets, scrub
from orchestrator.store.migrations import (
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
    pending_migrations,
)

STATE = Path("/state")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, STATE / "runs.sqlite3"),
        ("", STATE / "runs.sqlite3"),
        ("runs.db", STATE / "runs.db"),
        ("/srv/orch/runs.db", Path("/srv/orch/runs.db")),
        (Path("sub/runs.db"), STATE / "sub/runs.db"),
        ("sqlite:///runs.db", STATE / "runs.db"),
        ("sqlite:////srv/orch/runs.db", Path("/srv/orch/runs.db")),
        ("postgresql://u:p@db:5432/orch", "postgresql://u:p@db:5432/orch"),
        ("postgres://db/orch", "postgres://db/orch"),
    ],
)
def test_a_location_names_a_sqlite_file_or_a_postgres_dsn(
    given: str | Path | None, expected: Path | str
) -> None:
    assert store_location(given, state_dir=STATE) == expected


def test_an_unknown_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(StoreError, match="unsupported store scheme 'mysql'") as caught:
        store_location("mysql://root:hunter22@db/orch", state_dir=STATE)
    assert "hunter22" not in str(caught.value)
    with pytest.raises(StoreError, match="no file named"):
        store_location("sqlite://", state_dir=STATE)


def test_dsn_passwords_are_redacted_and_listed_for_scrubbing() -> None:
    dsn = "postgresql://orch:s%40cret@db:5432/orch?sslmode=require&password=other-pw"
    assert redact_dsn(dsn) == "postgresql://orch:***@db:5432/orch?sslmode=require&password=***"
    assert set(dsn_secrets(dsn)) == {"s%40cret", "s@cret", "other-pw"}
    assert scrub("auth failed for s@cret and other-pw", dsn_secrets(dsn)) == (
        "auth failed for *** and ***"
    )
    assert redact_dsn("postgresql://db/orch") == "postgresql://db/orch"


def test_both_backends_have_the_same_ordered_schema_versions() -> None:
    versions = [m.version for m in SQLITE_MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions == [m.version for m in POSTGRES_MIGRATIONS]
    assert versions[-1] == SCHEMA_VERSION
    assert pending_migrations("x", 0, SQLITE_MIGRATIONS) == SQLITE_MIGRATIONS
    assert pending_migrations("x", SCHEMA_VERSION, SQLITE_MIGRATIONS) == ()
    with pytest.raises(StoreError, match="newer than this orchestrator knows"):
        pending_migrations("x", SCHEMA_VERSION + 1, SQLITE_MIGRATIONS)
