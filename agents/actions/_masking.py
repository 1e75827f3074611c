"""Masking secrets in command lines, environments and text that actions show."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from foundation.masking import MASK, is_secret_name
from foundation.secrets import scrub, url_secrets

# Flags whose value is a secret although their name does not say so (redis-cli -a PASS).
_ALSO_SECRET_FLAGS = frozenset({"-a", "--masterauth"})
_VALUE = r"(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
# The value is looked at, not consumed, so that a quoted argument ('-c "... --pass X"')
# is searched too.
_INLINE_FLAG = re.compile(r"(?<!\S)(--?[A-Za-z][\w.\-]*)([ \t]+|=)(?=" + _VALUE + ")")
_INLINE_ASSIGNMENT = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]*)(=|:[ \t]+)(?=" + _VALUE + ")")
_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]*:)([^@\s/]+)(@)")


def _secret_flag(flag: str) -> bool:
    return flag.lower() in _ALSO_SECRET_FLAGS or (
        flag.startswith("-") and is_secret_name(flag.lstrip("-"))
    )


def _reference(value: str) -> bool:
    # ${REDIS_PASSWORD} names where the secret comes from; it is not the secret: keep it.
    return value.lstrip("\"'").startswith("$")


def _mask_values(pattern: re.Pattern[str], text: str, secret: Callable[[str], bool]) -> str:
    """Mask the value after each ``pattern`` match (name, separator, value lookahead)
    whose name ``secret`` accepts."""
    parts: list[str] = []
    done = 0
    for match in pattern.finditer(text):
        name, _, value = match.groups()
        if match.start() < done or not secret(name) or _reference(value):
            continue
        parts += [text[done : match.end()], MASK]
        done = match.end() + len(value)
    return "".join([*parts, text[done:]])


def mask_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the known ``secrets`` values, the value after a secret flag
    (``--requirepass X``), of a secret-named assignment (``TOKEN=X``, ``PASSWORD: X``) and
    URL passwords replaced by ``***``. Names are judged by
    :func:`foundation.masking.is_secret_name`; ``${VAR}`` references stay."""
    text = scrub(text, secrets)
    text = _URL_PASSWORD.sub(
        lambda m: m.group(0) if _reference(m.group(2)) else f"{m.group(1)}{MASK}@", text
    )
    text = _mask_values(_INLINE_FLAG, text, _secret_flag)
    return _mask_values(_INLINE_ASSIGNMENT, text, is_secret_name)


def mask_command(argv: Sequence[str] | None, secrets: Sequence[str] = ()) -> list[str]:
    """A command with the value after each secret flag (``--requirepass X``) masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv or ():
        flag, eq, value = arg.partition("=")
        if hide_next:
            out.append(arg if _reference(arg) else MASK)
            hide_next = False
        elif _secret_flag(flag):
            out.append(f"{flag}={MASK}" if eq and not _reference(value) else arg)
            hide_next = not eq
        else:
            out.append(mask_text(arg, secrets))
    return out


def _container_secrets(config: Mapping[str, Any]) -> list[str]:
    """Secret values in a container's env and command, to scrub them from any text."""
    found: list[str] = []
    for item in config.get("Env") or ():
        name, _, value = str(item).partition("=")
        if is_secret_name(name) and value:
            found.append(value)
        found += url_secrets(value) if "://" in value else []
    argv = [str(a) for a in (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))]
    shown = mask_command(argv)
    found += [arg for arg, masked in zip(argv, shown, strict=True) if masked == MASK]
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and _secret_flag(flag):
            found.append(value)
        found += [
            m.group(3).strip("\"'") for m in _INLINE_FLAG.finditer(arg) if _secret_flag(m.group(1))
        ]
    return [s for s in found if s and not _reference(s)]
