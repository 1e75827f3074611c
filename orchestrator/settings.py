"""The one Settings object: environment (``ORCH_`` prefix) first, CLI flags on top.

Built once per process by the CLI and passed down explicitly. Secrets (the Redis URL's
password, a store DSN's password) are ``SecretStr`` so they never print by accident;
:func:`foundation.secrets.redact_url` gives the form that may appear in logs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundation.secrets import env_secrets, url_secrets

__all__ = ["Settings", "default_state_dir"]

#: Variables a step's subprocess inherits from the daemon; nothing else leaks in.
DEFAULT_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/orchestrator``, else ``~/.local/state/orchestrator``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator"


class Settings(BaseSettings):
    """Every setting of the orchestrator; durations are seconds (``_s``)."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="forbid", frozen=True)

    state_dir: Path = Field(default_factory=default_state_dir)
    redis_url: SecretStr | None = Field(default=None, description="redis:// or rediss:// URL")
    namespace: str = Field(default="orch", description="Key prefix shared by cooperating daemons")
    lease_s: float = Field(default=10.0, gt=0)
    aging_s: float = Field(default=30.0, gt=0)
    starve_after_s: float = Field(default=120.0, gt=0)
    redis_connect_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait to connect to Redis"
    )
    redis_op_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Longest wait for one Redis reply; default half a lease, 0.5 s to 5 s",
    )
    redis_outage_grace_s: float | None = Field(
        default=None,
        gt=0,
        description="How long acquire keeps retrying while Redis is unreachable before it "
        "fails; default three leases",
    )
    redis_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="How long a run's Redis state and event stream outlive its last write",
    )
    redis_events_maxlen: int = Field(
        default=10_000, ge=1, description="Events kept per run in its Redis stream"
    )
    kill_grace_s: float = Field(default=5.0, ge=0)
    pass_env: tuple[str, ...] = DEFAULT_PASS_ENV
    socket: Path | None = Field(
        default=None,
        description="Control socket; default $XDG_RUNTIME_DIR/orchestrator.sock, else "
        "<state_dir>/orchestrator.sock",
    )
    store: SecretStr | None = Field(
        default=None,
        description="Run store: a SQLite path or sqlite:/// URL, or a postgresql:// DSN; "
        "default <state_dir>/runs.db",
    )
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    store_wait_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a step waits for the run store to record its start before it "
        "fails without starting (the store is down or its disk is full)",
    )
    idle_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=512, ge=1)
    connect_wait_s: float = Field(
        default=5.0, ge=0, description="Clients wait for a starting daemon"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "console", "json"] = "auto"

    def with_overrides(self, **overrides: Any) -> Settings:
        """Return a copy with the non-None CLI flags applied (and validated)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return Settings.model_validate(data)

    def socket_path(self) -> Path:
        """Where the control socket lives."""
        if self.socket is not None:
            return self.socket
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and Path(runtime).is_dir():
            return Path(runtime) / "orchestrator.sock"
        return self.state_dir / "orchestrator.sock"

    def store_url(self) -> str | None:
        """The run store's location (with its secret, for opening it only); None: the
        default SQLite file in the state directory."""
        return self.store.get_secret_value() if self.store is not None else None

    def secrets(self) -> list[str]:
        """Secret values to scrub from events and messages."""
        found: list[str] = []
        for secret in (self.redis_url, self.store):
            if secret is not None and "://" in secret.get_secret_value():
                found.extend(url_secrets(secret.get_secret_value()))
        return found + env_secrets(self.step_env())

    def step_env(self) -> dict[str, str]:
        """The base environment of a step's subprocess."""
        return {name: os.environ[name] for name in self.pass_env if name in os.environ}
