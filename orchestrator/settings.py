"""The one Settings object: environment (``ORCH_`` prefix) first, CLI flags on top.

Built once per process by the CLI and passed down explicitly. Secrets (the Redis URL's
password, a store DSN's password) are ``SecretStr`` so they never print by accident;
:func:`redact_url` gives the form that may appear in logs and errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "default_state_dir", "redact_url"]

#: Variables a step's subprocess inherits from the daemon; nothing else leaks in.
DEFAULT_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/orchestrator``, else ``~/.local/state/orchestrator``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator"


def redact_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``redis://user:***@host:6379/0``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Settings(BaseSettings):
    """Every setting of the orchestrator; durations are seconds (``_s``)."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="forbid", frozen=True)

    state_dir: Path = Field(default_factory=default_state_dir)
    redis_url: SecretStr | None = Field(default=None, description="redis:// or rediss:// URL")
    namespace: str = Field(default="orch", description="Key prefix shared by cooperating daemons")
    lease_s: float = Field(default=10.0, gt=0)
    aging_s: float = Field(default=30.0, gt=0)
    starve_after_s: float = Field(default=120.0, gt=0)
    kill_grace_s: float = Field(default=5.0, ge=0)
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None CLI flags applied (and validated)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return Settings.model_validate(data)

    def secrets(self) -> list[str]:
        """Secret values to scrub from events and messages."""
        found: list[str] = []
        if self.redis_url is not None:
            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                found.append(password)
        return found

    def step_env(self) -> dict[str, str]:
        """The base environment of a step's subprocess."""
        return {name: os.environ[name] for name in self.pass_env if name in os.environ}
