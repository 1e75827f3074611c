"""Masking by value: the secret values known for a run, replaced wherever they appear.

The values come from URL passwords in the settings (:func:`~foundation.secrets.url_secrets`),
the secret-named variables of an environment (:func:`env_secrets`), a step's parameters
(:func:`param_secrets`) and a command line (:func:`argv_secrets`). :func:`scrub` replaces
given values; a :class:`Redactor` holds a run's values for its events; every value is also
remembered process-wide (:func:`remember_secrets`) so that the diagnostic log can
:func:`scrub_known` them too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from foundation.secrets._names import (
    MASK,
    MIN_SECRET,
    is_reference,
    is_secret_flag,
    is_secret_name,
)
from foundation.secrets._urls import url_secrets

__all__ = [
    "Redactor",
    "argv_secrets",
    "env_secrets",
    "known_secrets",
    "param_secrets",
    "remember_secrets",
    "scrub",
    "scrub_known",
]


def _longest_first(values: Iterable[str | None]) -> list[str]:
    return sorted({v for v in values if v and len(v) >= MIN_SECRET}, key=len, reverse=True)


def _replace(text: str, longest_first: Iterable[str]) -> str:
    for secret in longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each secret (of 3 characters or more; None is skipped) as ``***``."""
    return _replace(text, _longest_first(secrets))


def env_secrets(env: Mapping[str, str] | None) -> list[str]:
    """The secret values of an environment: those of secret-named variables
    (``DB_PASSWORD``, ``API_TOKEN``, ``*_KEY``, ``*_SECRET``) and URL passwords in any value.
    The orchestrator's own ``ORCH_*`` variables (fences, ids) are not secrets."""
    found: list[str] = []
    for name, value in (env or {}).items():
        if not isinstance(value, str) or name.startswith("ORCH_"):
            continue
        if is_secret_name(name) and len(value) >= MIN_SECRET:
            found.append(value)
        if "://" in value:
            found += url_secrets(value)
    return found


# A bare "key" is secret by name (a context package masks it), but in step parameters it names
# a state entry (state.put/get/wait): scrubbing "schema" from every event would garble them.
_NAMES_NOT_SECRETS = frozenset({"key"})


def param_secrets(params: Any) -> list[str]:
    """Secret values in a step's parameters: every ``env`` mapping (the action's own and a
    driver's), values of secret-named keys, values after secret flags in lists and URL
    passwords anywhere. Keys ending in ``_env`` (``password_env``) name variables: their
    values are not secrets (the variables' values are, through the step's environment);
    nor is the value of a bare ``key`` (a state entry's name)."""
    found: list[str] = []
    if isinstance(params, Mapping):
        for key, value in params.items():
            if key == "env" and isinstance(value, Mapping):
                found += env_secrets(value)
            elif str(key).endswith("_env") or key in _NAMES_NOT_SECRETS:
                continue  # names of variables or of state entries, not secret values
            elif isinstance(value, str) and is_secret_name(str(key)):
                found += [value] if len(value) >= MIN_SECRET else []
            else:
                found += param_secrets(value)
    elif isinstance(params, list | tuple):
        found += argv_secrets([v for v in params if isinstance(v, str)])
        for value in params:
            found += param_secrets(value)
    elif isinstance(params, str) and "://" in params:
        found += url_secrets(params)
    return found


_VALUE = r"(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
_INLINE_FLAG = re.compile(r"(?<!\S)(--?[A-Za-z][\w.\-]*)(?:[ \t]+|=)" + _VALUE)


def argv_secrets(argv: Sequence[str]) -> list[str]:
    """Secret values in a command line: the value after a secret flag (``--requirepass X``,
    ``--token=X``, also inside one argument: ``sh -c '... -a X'``); references stay out."""
    found: list[str] = []
    hide_next = False
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if hide_next:
            found.append(arg)
            hide_next = False
        elif is_secret_flag(flag):
            found += [value] if eq else []
            hide_next = not eq
        inline = _INLINE_FLAG.finditer(arg)
        found += [m.group(2).strip("\"'") for m in inline if is_secret_flag(m.group(1))]
    return [s for s in found if s and not is_reference(s)]


_known: set[str] = set()
_known_lock = threading.Lock()
_known_sorted: tuple[str, ...] = ()


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add ``values`` to the secrets this process knows (see :func:`scrub_known`)."""
    global _known_sorted
    new = {v for v in values if v and len(v) >= MIN_SECRET} - _known
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
    return _replace(text, _known_sorted)


class Redactor:
    """Replaces every known secret value inside strings with ``***``: the one masking path
    of a run's events (file, store, Redis stream, subscribers). :meth:`add` teaches it the
    secrets of a step's environment before the step runs."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self._json_forms: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        """Mask these values too, from now on (and in the diagnostic log)."""
        new = set(_longest_first(secrets)) - set(self._secrets)
        if new:
            remember_secrets(new)
            self._secrets = _longest_first([*self._secrets, *new])
            self._json_forms = tuple({orjson.dumps(s).decode()[1:-1] for s in self._secrets})

    def found_in_json(self, line: str) -> bool:
        """Whether a secret may be in the data that JSON ``line`` was made from: JSON escapes
        a string character by character, so a string holding a secret holds its escaped
        form. False means :meth:`value` would change nothing in that data's strings."""
        return any(form in line for form in self._json_forms)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every secret this redactor knows as ``***``."""
        return _replace(value, self._secrets)

    def value(self, value: Any) -> Any:
        """A copy of plain data (dicts, lists, scalars) with secrets masked in its strings."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
