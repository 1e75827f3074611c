"""Masking secrets in step parameters before they enter a context package.

A value is masked (replaced by ``***``) when its key, an environment-style ``NAME=value``
assignment or the command-line flag before it is named like a secret: a word such as
password, passwd, pass, pwd, passphrase, token, secret, key, apikey, dsn, credential, auth,
authorization, cookie or private, or a word ending in pass, password, token, secret or dsn
(``requirepass``). Credentials in URLs (``redis://user:pw@host``) are masked wherever they
appear. Masking errs on the side of hiding: ``bypass`` is masked too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "is_secret_name", "mask_secrets", "mask_text"]

MASK = "***"

_SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "dsn",
        "key",
        "passphrase",
        "pass",
        "passwd",
        "password",
        "private",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "privkey",
    }
)
# Words ending like a secret, written without a separator: requirepass, authtoken. Not
# "key": monkey and hotkey are not secrets (api_key and apiKey split into words).
_SECRET_SUFFIXES = ("pass", "passwd", "password", "token", "secret", "dsn")
# camelCase and separators split names into words: dbPassword -> db, password.
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@?#]*)(?::(?P<pw>[^\s/@?#]*))?@"
)
# NAME=value or NAME: value inside a string (env assignments, DSN key=value lists, flags,
# query strings). Only the name and separator are consumed, so that a match on a harmless
# name ("https:") does not swallow a secret later in its value ("?token=...").
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<sep>\s*[=:]\s*)"
    r"(?=(?P<value>[^\s&;,]+))"
)
_FLAG = re.compile(r"^--?(?P<name>[A-Za-z][A-Za-z0-9_.\-]*)$")


def is_secret_name(name: str) -> bool:
    """Whether a key, variable or flag called ``name`` holds a secret."""
    words = [w.lower() for w in _WORD.findall(name)]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(w.endswith(_SECRET_SUFFIXES) for w in words)


def _mask_url(match: re.Match[str]) -> str:
    if match.group("pw") is not None:
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
    # A user name alone before '@' is often a token (https://TOKEN@host).
    return f"{match.group('scheme')}{MASK}@"


def mask_text(text: str) -> str:
    """``text`` with URL credentials and secret-named ``NAME=value`` assignments masked."""
    text = _URL_CREDENTIALS.sub(_mask_url, text)
    parts: list[str] = []
    done = 0  # text[:done] is already in parts
    for match in _ASSIGNMENT.finditer(text):
        if match.start() < done or not is_secret_name(match.group("name")):
            continue
        parts.append(text[done : match.end()])
        parts.append(MASK)
        done = match.end() + len(match.group("value"))
    parts.append(text[done:])
    return "".join(parts)


def _mask_list(items: list[Any] | tuple[Any, ...]) -> list[Any]:
    masked: list[Any] = []
    hide_next = False
    for item in items:
        if hide_next and isinstance(item, str | int | float) and not isinstance(item, bool):
            masked.append(MASK)
            hide_next = False
            continue
        hide_next = False
        if isinstance(item, str):
            flag = _FLAG.match(item)
            # "--password VALUE": the value is the next argument.
            hide_next = flag is not None and is_secret_name(flag.group("name"))
        masked.append(mask_secrets(item))
    return masked


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (plain data: dicts, lists, scalars) with its secrets masked.

    Mappings keep their keys; a value under a secret-named key becomes ``***`` (whole
    mappings and lists included). Lists mask the argument after a secret-named flag.
    """
    if isinstance(value, Mapping):
        return {
            str(key): MASK if is_secret_name(str(key)) else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return _mask_list(value)
    if isinstance(value, str):
        return mask_text(value)
    return value
