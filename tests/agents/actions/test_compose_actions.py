"""compose.patch / compose.restore / compose.validate on real files and docker-compose."""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

import anyio
import pytest
from pydantic import ValidationError

from agents.actions.compose import (
    ComposePatchParams,
    ComposeRestoreParams,
    ComposeValidateParams,
    parse_path,
    register,
    run_patch,
    run_restore,
    run_validate,
)
from agents.base import ActionContext, ActionResult
from agents.registry import ActionRegistry
from foundation.errors import ActionFailed

REPO = Path(__file__).resolve().parents[3]

# The users' stack, as the seed describes it: Redis without a password yet, GPUs unused.
COMPOSE = """\
# Phase 2 stack: cache, database, models.
services:
  redis:
    image: redis:7   # pinned major
    # no password yet: services see NOAUTH once one is set
    command: ["redis-server", "--appendonly", "yes"]
    environment:
      TZ: UTC  # logs in UTC
      # memory limit for the cache
      MAXMEMORY: 256mb
    # published for the API gateway
    ports:
      - "6379:6379"

  postgres:
    image: postgres:15
    environment:
      - POSTGRES_USER=orch
      - POSTGRES_DB=orch
      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD}

  ollama:
    image: ollama/ollama
    volumes:
      - models:/root/.ollama

volumes:
  models: {}
"""


def ctx(tmp_path: Path) -> ActionContext:
    return ActionContext(
        run_id="r",
        stream="redis-auth",
        step="patch",
        agent="infrastructure-recovery",
        attempt=1,
        fences={},
        env={"PATH": os.environ["PATH"]},
        workdir=tmp_path,
        kill_grace_s=0.5,
    )


@pytest.fixture
def compose_file(tmp_path: Path) -> Path:
    path = tmp_path / "docker-compose.yml"
    path.write_text(COMPOSE)
    (tmp_path / ".env").write_text("POSTGRES_PASSWORD=pg-secret\nREDIS_PASSWORD=r3dis-Secret\n")
    return path


# The actions are async; these tests need no concurrency, so each runs its own loop.
def patch(tmp_path: Path, **params: object) -> ActionResult:
    model = ComposePatchParams.model_validate({"file": "docker-compose.yml", **params})
    return anyio.run(run_patch, ctx(tmp_path), model)


def restore(tmp_path: Path, params: ComposeRestoreParams) -> ActionResult:
    return anyio.run(run_restore, ctx(tmp_path), params)


def validate(tmp_path: Path, params: ComposeValidateParams) -> ActionResult:
    return anyio.run(run_validate, ctx(tmp_path), params)


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "#" in line]


def changed_lines(diff: str) -> list[str]:
    return [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]


def test_register_adds_the_three_actions() -> None:
    registry = ActionRegistry()
    register(registry)
    assert sorted(registry) == ["compose.patch", "compose.restore", "compose.validate"]


def test_paths_parse_dots_indexes_and_quoted_keys() -> None:
    assert parse_path("services.redis.command[2]") == ["services", "redis", "command", 2]
    assert parse_path("services.redis.command.2") == ["services", "redis", "command", "2"]
    assert parse_path('services.redis.labels["com.example.tier"]') == [
        "services", "redis", "labels", "com.example.tier",
    ]  # fmt: skip
    for bad in ("", "a..b", "a[x", ".a"):
        with pytest.raises(ValueError, match=r"bad path|empty path"):
            parse_path(bad)
    with pytest.raises(ValidationError, match="bad path"):
        ComposePatchParams(file="f", remove=["a..b"])


def test_set_keeps_comments_order_and_other_lines(tmp_path: Path, compose_file: Path) -> None:
    result = patch(
        tmp_path,
        set={
            "services.redis.command": [
                "redis-server", "--appendonly", "yes", "--requirepass", "${REDIS_PASSWORD}",
            ],
            "services.redis.environment.REDIS_PASSWORD": "${REDIS_PASSWORD}",
        },
    )  # fmt: skip
    assert result.ok, result.summary
    text = compose_file.read_text()
    assert comments(text) == comments(COMPOSE)
    assert changed_lines(result.output) == [
        '-    command: ["redis-server", "--appendonly", "yes"]',
        '+    command: ["redis-server", "--appendonly", "yes", "--requirepass", '
        '"${REDIS_PASSWORD}"]',
        "+      REDIS_PASSWORD: ${REDIS_PASSWORD}",
    ]
    # The new key comes after the last one, before the comment that belongs to `ports`.
    assert "MAXMEMORY: 256mb\n      REDIS_PASSWORD: ${REDIS_PASSWORD}\n    # published" in text
    assert list(re.findall(r"^  (\w+):", text, re.M)) == ["redis", "postgres", "ollama", "models"]
    evidence = result.evidence[0]
    assert evidence.detail["sha256_before"] != evidence.detail["sha256_after"] == evidence.sha256
    assert result.metrics["compose.changed_lines"] == 3.0


def test_write_is_atomic_with_a_backup_and_keeps_the_mode(
    tmp_path: Path, compose_file: Path
) -> None:
    compose_file.chmod(0o640)
    inode = compose_file.stat().st_ino
    result = patch(tmp_path, set={"services.redis.image": "redis:7.2"})
    assert result.ok
    assert compose_file.stat().st_ino != inode  # a new file renamed over the old one
    assert compose_file.stat().st_mode & 0o777 == 0o640
    backup = Path(result.details["backup"])
    assert backup.parent == tmp_path and backup.read_text() == COMPOSE
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # The comment keeps its column.
    assert "    image: redis:7.2 # pinned major\n" in compose_file.read_text()


def test_remove_takes_its_lines_not_its_neighbours_comments(
    tmp_path: Path, compose_file: Path
) -> None:
    result = patch(
        tmp_path,
        remove=[
            "services.redis.environment.MAXMEMORY",
            "services.postgres.environment.POSTGRES_DB",
        ],
    )
    assert result.ok
    assert changed_lines(result.output) == [
        "-      # memory limit for the cache",
        "-      MAXMEMORY: 256mb",
        "-      - POSTGRES_DB=orch",
    ]
    text = compose_file.read_text()
    assert "    # published for the API gateway\n    ports:" in text
    # A whole service goes with its blank line kept for the next one.
    patch(tmp_path, remove=["services.ollama"], backup=False)
    assert "POSTGRES_PASSWORD}\n\nvolumes:" in compose_file.read_text()


def test_list_items_by_index(tmp_path: Path, compose_file: Path) -> None:
    result = patch(
        tmp_path,
        set={"services.redis.command[2]": "no", "services.redis.command[3]": "--save"},
        remove=["services.redis.ports[0]"],
    )
    assert result.ok, result.summary
    text = compose_file.read_text()
    assert 'command: ["redis-server", "--appendonly", "no", --save]' in text
    assert "    ports: []\n" in text
    with pytest.raises(ActionFailed, match=r"command\[9\] is out of range: the list has 4 items"):
        patch(tmp_path, set={"services.redis.command[9]": "x"})


def test_gpu_device_mapping_is_added_as_nested_mappings(tmp_path: Path, compose_file: Path) -> None:
    devices = [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    result = patch(tmp_path, set={"services.ollama.deploy.resources.reservations.devices": devices})
    assert result.ok
    assert (
        "      - models:/root/.ollama\n"
        "    deploy:\n"
        "      resources:\n"
        "        reservations:\n"
        "          devices:\n"
        "            - driver: nvidia\n"
        "              count: all\n"
        "              capabilities:\n"
        "                - gpu\n"
        "\n"
        "volumes:"
    ) in compose_file.read_text()


def test_restore_is_byte_identical_from_the_undo_record(tmp_path: Path, compose_file: Path) -> None:
    # Windows line endings and odd spacing survive too.
    original = COMPOSE.replace("\n", "\r\n").encode()
    compose_file.write_bytes(original)
    result = patch(
        tmp_path,
        set={"services.redis.environment.REDIS_PASSWORD": "${REDIS_PASSWORD}"},
        remove=["services.redis.ports"],
    )
    assert result.ok and b"\r\n" in compose_file.read_bytes()
    assert result.undo is not None and result.undo.action == "compose.restore"
    restored = restore(tmp_path, ComposeRestoreParams.model_validate(result.undo.params))
    assert restored.ok, restored.summary
    assert compose_file.read_bytes() == original
    # From the backup file alone, too.
    result = patch(tmp_path, set={"services.redis.image": "redis:7.2"})
    assert result.undo is not None
    params = {**result.undo.params, "original_b64": None}
    assert (restore(tmp_path, ComposeRestoreParams.model_validate(params))).ok
    assert compose_file.read_bytes() == original


def test_restore_refuses_a_file_changed_since_unless_forced(
    tmp_path: Path, compose_file: Path
) -> None:
    result = patch(tmp_path, set={"services.redis.image": "redis:7.2"})
    assert result.undo is not None
    compose_file.write_text(compose_file.read_text() + "# edited by hand\n")
    params = ComposeRestoreParams.model_validate(result.undo.params)
    refused = restore(tmp_path, params)
    assert not refused.ok and "changed since the patch" in refused.summary
    assert "# edited by hand" in compose_file.read_text()
    forced = params.model_copy(update={"force": True})
    assert restore(tmp_path, forced).ok
    assert compose_file.read_text() == COMPOSE
    tampered = params.model_copy(update={"original_b64": base64.b64encode(b"x").decode()})
    with pytest.raises(ActionFailed, match="not the original's"):
        restore(tmp_path, tampered)


def test_bad_paths_say_what_is_there(tmp_path: Path, compose_file: Path) -> None:
    with pytest.raises(ActionFailed) as missing:
        patch(tmp_path, remove=["services.cache.command"])
    assert str(compose_file) in str(missing.value)
    assert "services.cache does not exist (keys there: redis, postgres, ollama)" in str(
        missing.value
    )
    with pytest.raises(ActionFailed, match=r"services\.redis\.image is a str value, not a"):
        patch(tmp_path, set={"services.redis.image.tag": "7"})
    with pytest.raises(ActionFailed, match=r"is a mapping, not a list: write \.key"):
        patch(tmp_path, set={"services[0]": "x"})
    with pytest.raises(ActionFailed, match="not in the KEY=value list"):
        patch(tmp_path, remove=["services.postgres.environment.NOPE"])
    assert compose_file.read_text() == COMPOSE  # nothing written on error


def test_reformatting_is_refused_unless_allowed(tmp_path: Path, compose_file: Path) -> None:
    compose_file.write_text("services:\n  redis:\n    image:   redis:7\n")
    with pytest.raises(ActionFailed, match=r"docker-compose.yml:3: .*allow_reformat: true"):
        patch(tmp_path, set={"services.redis.command": ["redis-server"]})
    result = patch(tmp_path, set={"services.redis.command": ["redis-server"]},
                         allow_reformat=True)  # fmt: skip
    assert result.ok and "image: redis:7\n" in compose_file.read_text()


def test_secrets_are_masked_in_the_diff(tmp_path: Path, compose_file: Path) -> None:
    result = patch(
        tmp_path,
        set={
            "services.redis.command": ["redis-server", "--requirepass", "hunter2-literal"],
            "services.redis.environment.REDIS_PASSWORD": "also-literal-42",
        },
    )
    shown = result.output + result.evidence[0].excerpt + result.summary
    assert "hunter2-literal" not in shown and "also-literal-42" not in shown
    assert "--requirepass" in shown and "***" in shown


def test_validate_runs_docker_compose_config(
    tmp_path: Path, compose_file: Path, docker_compose: str
) -> None:
    patch(
        tmp_path,
        set={
            "services.redis.command": ["redis-server", "--requirepass", "${REDIS_PASSWORD}"],
            "services.ollama.deploy.resources.reservations.devices": [
                {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
            ],
        },
    )
    params = ComposeValidateParams(file="docker-compose.yml", env_file=".env")
    result = validate(tmp_path, params)
    assert result.ok, result.output
    assert result.evidence[0].detail["exit_code"] == 0
    assert result.evidence[0].sha256 is not None


def test_patch_with_check_puts_back_a_file_compose_rejects(
    tmp_path: Path, compose_file: Path, docker_compose: str
) -> None:
    result = patch(
        tmp_path, set={"services.redis.ports": "not-a-list"}, check=True, env_file=".env"
    )
    assert not result.ok
    assert "compose config failed" in result.summary and "put back" in result.summary
    assert compose_file.read_text() == COMPOSE
    assert result.undo is None


def test_the_stack_file_patched_for_gpus_still_validates(
    tmp_path: Path, docker_compose: str
) -> None:
    shutil.copy(REPO / "compose" / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(REPO / "compose" / ".env.example", tmp_path / ".env")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = patch(
        tmp_path,
        set={
            "services.orchestrator.deploy.resources.reservations.devices": [
                {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
            ]
        },
        check=True,
        env_file=".env",
    )
    assert result.ok, result.summary
    assert len(result.evidence) == 2 and result.evidence[1].detail["exit_code"] == 0
