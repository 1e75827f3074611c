"""Secrets in step parameters never reach a context package."""

from __future__ import annotations

from typing import Any

import pytest

from context_packages import MASK, TiktokenTokenizer, build_package, is_secret_name, mask_secrets
from streams.model import Plan

SECRETS = ["hunter2", "s3cr3t-pw", "tok_ABC123", "ghp_deadbeef", "pg-pass-9", "qs-token-77"]


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "REDIS_PASSWORD",
        "dbPassword",
        "api_key",
        "apiKey",
        "AUTH_TOKEN",
        "secret",
        "client-secret",
        "dsn",
        "DATABASE_DSN",
        "requirepass",
        "private_key",
        "credentials",
        "Authorization",
        "passwd",
        "pwd",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "argv",
        "env",
        "cwd",
        "stdin",
        "ok_exit_codes",
        "monkey",
        "keys",
        "hostname",
        "OLLAMA_NUM_GPU",
        "pool_size",
        "url",
    ],
)
def test_harmless_names(name: str) -> None:
    assert not is_secret_name(name)


def test_mask_secrets_in_nested_parameters() -> None:
    params: dict[str, Any] = {
        "argv": [
            "redis-cli",
            "--password",
            "hunter2",
            "--auth-token=tok_ABC123",
            "redis://default:s3cr3t-pw@redis:6379/0",
            "https://ghp_deadbeef@github.com/x",
            "host=db user=app password=pg-pass-9",
            "https://h/?a=1&token=qs-token-77&b=2",
            "OLLAMA_NUM_GPU=3",
        ],
        "env": {"REDIS_PASSWORD": "hunter2", "HOME": "/root"},
        "dsn": "postgresql://app:pg-pass-9@db/app",
        "headers": {"Authorization": "Bearer tok_ABC123"},
    }
    masked = mask_secrets(params)
    text = repr(masked)
    for secret in SECRETS:
        assert secret not in text
    assert masked["argv"][0] == "redis-cli"
    assert masked["argv"][2] == MASK
    assert masked["argv"][4] == f"redis://default:{MASK}@redis:6379/0"
    assert masked["argv"][-1] == "OLLAMA_NUM_GPU=3"
    assert masked["env"] == {"REDIS_PASSWORD": MASK, "HOME": "/root"}
    assert masked["dsn"] == MASK
    assert params["env"]["REDIS_PASSWORD"] == "hunter2"  # the plan itself is untouched


def test_package_masks_secrets(tokenizer: TiktokenTokenizer) -> None:
    plan = Plan.model_validate(
        {
            "plan": "secrets",
            "caps": {"io": 1},
            "agents": {"ops": {"class": "io", "can": ["command"], "role": "operations"}},
            "streams": [
                {
                    "id": "s",
                    "team": ["ops"],
                    "steps": [
                        {
                            "id": "connect",
                            "agent": "ops",
                            "action": "command",
                            "with": {
                                "argv": [
                                    "redis-cli",
                                    "-u",
                                    "redis://:s3cr3t-pw@redis:6379",
                                    "--pass",
                                    "hunter2",
                                    "ping",
                                ],
                                "env": {"PGPASSWORD": "pg-pass-9", "API_TOKEN": "tok_ABC123"},
                                "stdin": "user=app\npassword=qs-token-77",
                                "cwd": "https://ghp_deadbeef@github.com/org/repo",
                            },
                            "undo": {
                                "action": "command",
                                "with": {"argv": ["reset", "--token", "tok_ABC123"]},
                            },
                        }
                    ],
                }
            ],
        }
    )
    package = build_package(plan, "ops", tokenizer=tokenizer)
    for secret in SECRETS:
        assert secret not in package.markdown
    assert "redis-cli" in package.markdown and '"PGPASSWORD": "***"' in package.markdown
    assert "tok_ABC123" not in package.to_json()
