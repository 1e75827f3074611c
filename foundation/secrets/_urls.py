"""Secrets in URLs and DSNs: the userinfo password and secret query parameters.

``redis://user:secret@host/0?token=x``: :func:`redact_url` gives the form that may be shown,
:func:`url_secrets` the values to scrub from any text, :func:`url_password` the password a
client should log in with, :func:`without_credentials` the URL to connect to without them.
Query keys are judged by :func:`~foundation.secrets.is_secret_query_key`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from foundation.secrets._names import MASK, is_secret_query_key

__all__ = ["redact_url", "url_password", "url_secrets", "without_credentials"]

UNPARSEABLE = "<unparseable URL>"


def _host(url: str) -> str:
    """``host:port`` of ``url`` (IPv6 in brackets); ValueError on a bad port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return host


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``; secret query
    parameters become ``***`` too. An unparseable URL is never echoed: it comes back as
    ``<unparseable URL>``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username or ''}:{MASK}@{_host(url)}"
        else:
            parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return UNPARSEABLE
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_query_key(k) for k, _ in pairs):
            masked = [(k, MASK if is_secret_query_key(k) else v) for k, v in pairs]
            query = urlencode(masked, safe="*/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secret values in ``url`` (userinfo password, secret query parameters), both as
    written and percent-decoded (the form a driver's message would show)."""
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query) if is_secret_query_key(k) and v]
    return sorted({*found, *(unquote(v) for v in found)})


def url_password(url: str) -> str | None:
    """The password in ``url``, decoded: the userinfo's, else the first secret query
    parameter's (``?password=``); None when it has none or cannot be parsed."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return unquote(parts.password)
    except ValueError:
        return None
    for key, value in parse_qsl(parts.query):
        if is_secret_query_key(key) and value:
            return value
    return None


def without_credentials(url: str, *, keep_user: bool = False) -> str:
    """``url`` without its password and secret query parameters (and without the user name
    unless ``keep_user``): what a client connects to once it holds them separately.
    ValueError when ``url`` cannot be parsed."""
    parts = urlsplit(url)
    netloc = _host(url)
    if keep_user and parts.username:
        netloc = f"{parts.username}@{netloc}"
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if not is_secret_query_key(k)]
    query = urlencode(kept, safe="/:")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
