"""Keeping secrets out of logs, events, errors and the run store: one place for it.

A URL or DSN may carry a password in its userinfo (``redis://:secret@host``) or its query
(``?password=secret``). :func:`redact_url` gives the form that may be shown;
:func:`url_secrets` lists the secret values so that any text (a driver's error message, a
command's output) can be :func:`scrub`-bed before it goes anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

__all__ = ["redact_url", "scrub", "url_secrets"]

_SECRET_QUERY_KEYS = frozenset({"password", "passfile", "sslpassword"})


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``; secret query
    parameters become ``***`` too. An unparseable URL is never echoed."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            if parts.port is not None:
                host = f"{host}:{parts.port}"
            netloc = f"{parts.username or ''}:***@{host}"
    except ValueError:
        return "<unparseable URL>"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*/",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secret values in ``url`` (userinfo password, secret query parameters), both as
    written and percent-decoded (the form a driver's message would show)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS and v]
    return sorted({*found, *(unquote(v) for v in found)})


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret (of 3 characters or more; None is skipped) as ``***``."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
