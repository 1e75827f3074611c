"""Keeping secrets out of logs, events, errors and the run store: one place for it.

A URL or DSN may carry a password in its userinfo (``redis://:secret@host``) or its query
(``?password=secret``). :func:`redact_url` gives the form that may be shown;
:func:`url_secrets` lists the secret values so that any text (a driver's error message, a
command's output) can be :func:`scrub`-bed before it goes anywhere.

Masking is by value: the secret values known for a run (URL passwords in the settings, the
secret-named variables of the step environment, a step's own ``env`` and a driver's ``env``:
:func:`env_secrets`, :func:`param_secrets`) are replaced wherever they appear. Each value is
also remembered process-wide (:func:`remember_secrets`) so that the diagnostic log can scrub
them too (:func:`scrub_known`). Text a step produced is quoted only after
:func:`strip_controls` (no terminal escape sequences or control characters).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from foundation.masking import is_secret_name

__all__ = [
    "env_secrets",
    "known_secrets",
    "param_secrets",
    "redact_url",
    "remember_secrets",
    "scrub",
    "scrub_known",
    "strip_controls",
    "url_secrets",
]

_MIN_SECRET = 3

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
    known = (s for s in secrets if s and len(s) >= _MIN_SECRET)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def env_secrets(env: Mapping[str, str] | None) -> list[str]:
    """The secret values of an environment: those of secret-named variables
    (``DB_PASSWORD``, ``API_TOKEN``, ``*_KEY``, ``*_SECRET``) and URL passwords in any value.
    The orchestrator's own ``ORCH_*`` variables (fences, ids) are not secrets."""
    found: list[str] = []
    for name, value in (env or {}).items():
        if not isinstance(value, str) or name.startswith("ORCH_"):
            continue
        if is_secret_name(name) and len(value) >= _MIN_SECRET:
            found.append(value)
        if "://" in value:
            found += url_secrets(value)
    return found


_SECRET_PARAM = re.compile(r"pass(?:word|wd|phrase)?$|token|secret|api_?key", re.IGNORECASE)


def param_secrets(params: Any) -> list[str]:
    """Secret values in a step's parameters: every ``env`` mapping (the action's own and a
    driver's), values of password/token/secret-named keys and URL passwords anywhere."""
    found: list[str] = []
    if isinstance(params, Mapping):
        for key, value in params.items():
            if key == "env" and isinstance(value, Mapping):
                found += env_secrets(value)
            elif isinstance(value, str) and _SECRET_PARAM.search(str(key)):
                found += [value] if len(value) >= _MIN_SECRET else []
            else:
                found += param_secrets(value)
    elif isinstance(params, list | tuple):
        for value in params:
            found += param_secrets(value)
    elif isinstance(params, str) and "://" in params:
        found += url_secrets(params)
    return found


_known: set[str] = set()
_known_lock = threading.Lock()
_known_sorted: tuple[str, ...] = ()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add ``values`` to the secrets this process knows (see :func:`scrub_known`)."""
    global _known_sorted
    new = {v for v in values if v and len(v) >= _MIN_SECRET} - _known
    if not new:
        return
    with _known_lock:
        _known.update(new)
        _known_sorted = tuple(sorted(_known, key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    """Every secret value this process has been told about, longest first."""
    return _known_sorted


def scrub_known(text: str) -> str:
    """``text`` with every secret this process knows replaced by ``***``."""
    for secret in _known_sorted:
        if secret in text:
            text = text.replace(secret, "***")
    return text


# OSC (ESC ] ... BEL or ST), CSI (ESC [ params final), other two-byte escapes, then any C0
# control but tab and newline, DEL and the C1 controls.
_CONTROLS = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[()*+][0-~]"
    r"|\x1b[ -~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def strip_controls(text: str) -> str:
    """``text`` without terminal escape sequences (CSI, OSC) and control characters other
    than newline and tab: what a step printed, safe to quote in an event or an error."""
    return _CONTROLS.sub("", text) if _CONTROLS.search(text) else text
