"""Secrets of a container (its environment and command line), to scrub them from any text.

What is secret and how it is masked is :mod:`foundation.secrets`; this only reads a Docker
container's ``Config`` with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foundation.secrets import argv_secrets, env_secrets

__all__ = ["container_secrets"]


def container_secrets(config: Mapping[str, Any]) -> list[str]:
    """Secret values in a container's ``Env`` (``NAME=value`` items) and its command."""
    env = dict(str(item).partition("=")[::2] for item in config.get("Env") or ())
    argv = [str(a) for a in (*(config.get("Entrypoint") or ()), *(config.get("Cmd") or ()))]
    return [*env_secrets(env), *argv_secrets(argv)]
