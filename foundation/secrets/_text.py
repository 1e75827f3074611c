"""Masking by name: secrets in text, command lines and step parameters before they are shown.

A value is masked (replaced by ``***``) when its key, a ``NAME=value`` / ``NAME: value``
assignment or the command-line flag before it is secret by
:func:`~foundation.secrets.is_secret_name` (or :func:`~foundation.secrets.is_secret_flag`),
and credentials in URLs (``redis://user:pw@host``, ``https://TOKEN@host``) are masked
wherever they appear. ``Authorization: Bearer X`` masks ``X`` too. A reference
(``${REDIS_PASSWORD}``) names where a secret comes from and stays readable. Text a step
produced is quoted only after :func:`strip_controls` (no terminal escape sequences).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from foundation.secrets._names import MASK, is_reference, is_secret_flag, is_secret_name
from foundation.secrets._values import scrub

__all__ = ["mask_command", "mask_secrets", "mask_text", "strip_controls"]

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s:/@?#]*)(?::(?P<pw>[^\s/@]*))?@"
)
# A value: quoted, an HTTP auth scheme and its credentials, or a bare word (which ends at
# whitespace, a quote or a query string's "&").
_VALUE = r"(?P<value>\"[^\"]*\"|'[^']*'|(?:Bearer|Basic|Token|Digest)[ \t]+[^\s\"'&]+|[^\s\"'&]+)"
# The value is looked at, not consumed, so that a quoted argument ('-c "... --pass X"') is
# searched too, and a harmless name ("https:") does not swallow a secret later on.
_INLINE_FLAG = re.compile(
    r"(?<!\S)(?P<name>--?[A-Za-z][\w.\-]*)(?P<sep>[ \t]+|=)(?=" + _VALUE + ")"
)
_ASSIGNMENT = re.compile(
    r"(?<![\w.\-])(?P<name>[A-Za-z_][\w.\-]*)(?P<sep>[ \t]*[=:][ \t]*)(?=" + _VALUE + ")"
)
_FLAG = re.compile(r"^--?[A-Za-z][\w.\-]*$")


def _mask_url(match: re.Match[str]) -> str:
    scheme, user, password = match.group("scheme", "user", "pw")
    if password is None:
        # A user name alone before '@' is often a token (https://TOKEN@host).
        return match.group(0) if is_reference(user) else f"{scheme}{MASK}@"
    return match.group(0) if is_reference(password) else f"{scheme}{user}:{MASK}@"


def _mask_values(pattern: re.Pattern[str], text: str, secret: Callable[[str], bool]) -> str:
    """Mask the value after each ``pattern`` match whose name ``secret`` accepts."""
    parts: list[str] = []
    done = 0  # text[:done] is already in parts
    for match in pattern.finditer(text):
        value = match.group("value")
        if match.start() < done or not secret(match.group("name")) or is_reference(value):
            continue
        parts += [text[done : match.end()], MASK]
        done = match.end() + len(value)
    return "".join([*parts, text[done:]])


def mask_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the known ``secrets`` values, URL credentials, the value after a secret
    flag (``--requirepass X``) and of a secret-named assignment (``TOKEN=X``,
    ``PASSWORD: X``) replaced by ``***``; ``${VAR}`` references stay."""
    text = scrub(text, secrets)
    text = _URL_CREDENTIALS.sub(_mask_url, text)
    text = _mask_values(_INLINE_FLAG, text, is_secret_flag)
    return _mask_values(_ASSIGNMENT, text, is_secret_name)


def mask_command(argv: Sequence[Any] | None, secrets: Sequence[str] = ()) -> list[Any]:
    """A command (or any list) with the value after each secret flag (``--requirepass X``,
    ``--token=X``) masked, and each other item masked as :func:`mask_secrets` does."""
    out: list[Any] = []
    hide_next = False
    for arg in argv or ():
        if hide_next and isinstance(arg, str | int | float) and not isinstance(arg, bool):
            out.append(arg if isinstance(arg, str) and is_reference(arg) else MASK)
            hide_next = False
            continue
        hide_next = False
        if isinstance(arg, str):
            flag, eq, value = arg.partition("=")
            if is_secret_flag(flag) and _FLAG.match(flag):
                out.append(f"{flag}={MASK}" if eq and not is_reference(value) else arg)
                hide_next = not eq
                continue
            out.append(mask_text(arg, secrets))
        else:
            out.append(mask_secrets(arg))
    return out


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
        return mask_command(value)
    if isinstance(value, str):
        return mask_text(value)
    return value


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
