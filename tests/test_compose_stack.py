"""The compose stack in compose/: docker-compose accepts it, and it is put together right.

Checked with Debian's docker-compose (v1; installed when missing): ``config -q`` with the
example env file, then the resolved configuration's structure. No engine is needed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "compose" / "docker-compose.yml"
ENV_EXAMPLE = REPO / "compose" / ".env.example"
DOCKERFILE = REPO / "compose" / "Dockerfile"


def compose(
    binary: str, *args: str, env_file: Path = ENV_EXAMPLE
) -> subprocess.CompletedProcess[str]:
    argv = [binary, "--env-file", str(env_file), "-f", str(STACK), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def example_env() -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in ENV_EXAMPLE.read_text().splitlines()
             if ln.strip() and not ln.startswith("#"))  # fmt: skip
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def resolved(docker_compose: str) -> dict[str, Any]:
    """The stack as docker-compose resolves it with the example env file."""
    done = compose(docker_compose, "config")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def test_config_quiet_passes(docker_compose: str) -> None:
    done = compose(docker_compose, "config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_a_missing_password_is_a_clear_error(docker_compose: str, tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    env_file.write_text("POSTGRES_PASSWORD=x\n")
    done = compose(docker_compose, "config", "-q", env_file=env_file)
    assert done.returncode != 0
    assert "set REDIS_PASSWORD in compose/.env" in done.stderr


def test_three_services_each_with_a_healthcheck(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert sorted(services) == ["orchestrator", "postgres", "redis"]
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert "PONG" in services["redis"]["healthcheck"]["test"][1]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["orchestrator"]["healthcheck"]["test"][1:3] == ["orchestrator", "status"]


def test_redis_requires_the_password_from_the_env_file(resolved: dict[str, Any]) -> None:
    redis = resolved["services"]["redis"]
    assert redis["environment"]["REDIS_PASSWORD"] == example_env()["REDIS_PASSWORD"]
    # The command reads it at start; the resolved config does not carry it in the command.
    assert '--requirepass "$$REDIS_PASSWORD"' in redis["command"][-1]
    assert example_env()["REDIS_PASSWORD"] not in " ".join(redis["command"])


def test_the_daemon_uses_postgres_and_redis_and_waits_for_them(resolved: dict[str, Any]) -> None:
    daemon = resolved["services"]["orchestrator"]
    env = daemon["environment"]
    assert daemon["command"] == ["orchestrator", "daemon"]
    store = urlsplit(env["ORCH_STORE"])
    assert store.scheme == "postgresql" and store.hostname == "postgres" and store.port == 5432
    assert store.password == example_env()["POSTGRES_PASSWORD"]
    coordinator = urlsplit(env["ORCH_REDIS_URL"])
    assert coordinator.scheme == "redis" and coordinator.hostname == "redis"
    assert coordinator.password == example_env()["REDIS_PASSWORD"]
    assert daemon["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert daemon["build"]["dockerfile"] == "compose/Dockerfile"


def test_the_control_socket_is_on_a_shared_named_volume(resolved: dict[str, Any]) -> None:
    daemon = resolved["services"]["orchestrator"]
    socket_dir = str(Path(daemon["environment"]["ORCH_SOCKET"]).parent)
    mounts = {m.split(":")[1]: m.split(":")[0] for m in daemon["volumes"]}
    assert mounts[socket_dir] in resolved["volumes"]
    assert mounts[daemon["environment"]["ORCH_STATE_DIR"]] in resolved["volumes"]
    assert {"pgdata", "redis-data"} <= set(resolved["volumes"])


def test_no_literal_secret_in_the_stack_file() -> None:
    text = STACK.read_text()
    for name, value in example_env().items():
        if "PASSWORD" in name:
            assert value not in text
    source = yaml.safe_load(text)
    env = source["services"]["orchestrator"]["environment"]
    assert "${REDIS_PASSWORD:?" in env["ORCH_REDIS_URL"]
    assert "${POSTGRES_PASSWORD:?" in env["ORCH_STORE"]
    for service in source["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), key


def test_env_example_holds_placeholders_only() -> None:
    env = example_env()
    assert {"REDIS_PASSWORD", "POSTGRES_PASSWORD"} <= set(env)
    for name, value in env.items():
        if "PASSWORD" in name:
            assert value.startswith("change-me"), name
            assert re.fullmatch(r"[A-Za-z0-9_-]+", value), "URL-safe, as the comment asks"
    assert ".env" in (REPO / "compose" / ".gitignore").read_text().split()


def test_dockerfile_installs_the_project_and_runs_the_daemon() -> None:
    lines = [ln.strip() for ln in DOCKERFILE.read_text().splitlines()]
    froms = [ln for ln in lines if ln.startswith("FROM")]
    assert froms and all(ln.startswith("FROM python:3.11-slim") for ln in froms)
    assert [ln for ln in lines if ln.startswith("CMD")] == ['CMD ["orchestrator", "daemon"]']
    assert any("pip wheel" in ln and ln.endswith(" .") for ln in lines)
    assert any("pip install" in ln for ln in lines)
    # Everything it copies is there, relative to the build context (the repository root).
    for line in lines:
        if line.startswith("COPY") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    assert "USER orch" in lines
