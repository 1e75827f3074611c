"""The Redis coordinator's own bounds come from the settings (``ORCH_REDIS_*``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from foundation.errors import CoordinatorUnavailable
from orchestrator.runs import open_coordinator
from orchestrator.settings import Settings


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_the_redis_bounds_are_settings_with_orch_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_REDIS_CONNECT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("ORCH_REDIS_OP_TIMEOUT_S", "0.75")
    monkeypatch.setenv("ORCH_REDIS_OUTAGE_GRACE_S", "12")
    monkeypatch.setenv("ORCH_REDIS_RETENTION_S", "3600")
    monkeypatch.setenv("ORCH_REDIS_EVENTS_MAXLEN", "500")
    settings = Settings()
    assert settings.redis_connect_timeout_s == 2.5
    assert settings.redis_op_timeout_s == 0.75
    assert settings.redis_outage_grace_s == 12
    assert settings.redis_retention_s == 3600
    assert settings.redis_events_maxlen == 500
    monkeypatch.setenv("ORCH_REDIS_OP_TIMEOUT_S", "0")
    with pytest.raises(ValueError, match="redis_op_timeout_s"):
        Settings()


async def test_a_silent_redis_is_given_up_on_by_the_timeout_settings(silent_server: int) -> None:
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{silent_server}/0",  # type: ignore[arg-type]
        redis_connect_timeout_s=0.6,
        redis_op_timeout_s=0.7,
    )
    with pytest.raises(CoordinatorUnavailable) as caught:
        async with open_coordinator(settings):
            pass
    # Connecting may take the connect timeout, each reply the op timeout; the message names
    # the first (the default would say 5s).
    assert "no answer within 0.6s" in str(caught.value)
