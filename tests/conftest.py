"""Fixtures shared across the suite: real servers started on free ports for the session."""

from tests.servers_postgres import (  # noqa: F401  (fixtures, found by name)
    fresh_postgres,
    postgres_server,
    postgres_template,
)
