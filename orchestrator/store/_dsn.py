"""Store locations: telling SQLite paths from PostgreSQL DSNs, and keeping DSN secrets out.

A DSN can carry its password in the userinfo (``postgresql://user:secret@host/db``) or in
the query (``?password=secret``); :mod:`foundation.secrets` handles both.
"""

from __future__ import annotations

from foundation.secrets import redact_url, scrub, url_secrets

__all__ = ["POSTGRES_SCHEMES", "dsn_secrets", "redact_dsn", "scrub"]

POSTGRES_SCHEMES = ("postgresql", "postgres")

#: A DSN is a URL: the same rules apply.
redact_dsn = redact_url
dsn_secrets = url_secrets
