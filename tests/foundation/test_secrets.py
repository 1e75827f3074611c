"""The one definition of what is secret: the cases the five former copies disagreed on.

Each case below was missed by at least one of the former lists (the run's URL redaction, the
Redis backend's, the redis / postgres / http actions', the events' parameter scan, the
context packages' text masking); the union now hides it everywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation.secrets import (
    MASK,
    Redactor,
    is_secret_name,
    mask_secrets,
    mask_text,
    param_secrets,
    redact_url,
    url_password,
    url_secrets,
    without_credentials,
)
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://db:6379/0?token=tk-123456", "tk-123456"),  # missed by the run's list
        ("redis://db:6379/0?auth=au-123456", "au-123456"),  # missed by the run's list
        ("postgresql://db/app?sslpassword=ssl-12345", "ssl-12345"),  # missed by redis, http
        ("https://h/health?access_token=at-12345", "at-12345"),  # only http knew it
        ("https://h/blob?sv=1&sig=sg-12345", "sg-12345"),  # only http knew it
        ("https://h/x?api_key=ak-12345", "ak-12345"),  # missed by redis, postgres, run
        ("postgresql://db/app?pwd=pw-12345", "pw-12345"),  # missed by postgres, run
        ("https://h/x?client_secret=cs-12345", "cs-12345"),  # missed by every list
    ],
)
def test_secret_query_keys_are_redacted_and_listed(url: str, secret: str) -> None:
    shown = redact_url(url)
    assert secret not in shown and MASK in shown
    assert secret in url_secrets(url)
    assert secret not in without_credentials(url)


def test_settings_secrets_use_the_whole_definition() -> None:
    settings = Settings(
        redis_url="redis://db:6379/0?token=redis-tok-1",  # type: ignore[arg-type]
        store="postgresql://app@db/orch?sslpassword=store-ssl-1",  # type: ignore[arg-type]
    )
    assert {"redis-tok-1", "store-ssl-1"} <= set(settings.secrets())


def test_a_query_password_is_the_login_password_and_userinfo_wins() -> None:
    assert url_password("redis://db/0?auth=from-query") == "from-query"
    assert url_password("postgresql://u:p%40ss@db/app?password=q") == "p@ss"
    assert url_password("redis://db/0?db=1") is None
    assert without_credentials(
        "postgresql://u:pw@db/app?sslmode=require&password=q", keep_user=True
    ) == ("postgresql://u@db/app?sslmode=require")


@pytest.mark.parametrize(
    "name",
    [
        "masterauth",  # only redis-cli's flag list and the CONFIG pattern knew it
        "tokenizer_secret",
        "db_pwd",  # missed by the step-parameter scan of events
        "private_key",  # missed by the step-parameter scan of events
        "credentials",
        "authtoken",
        "clientSecretValue",
    ],
)
def test_secret_names_from_every_former_list(name: str) -> None:
    assert is_secret_name(name)


def test_step_parameters_in_events_lose_what_packages_already_hid() -> None:
    params = {
        "db_pwd": "pwd-value-1",
        "private_key": "pk-value-1",
        "argv": ["redis-cli", "-a", "cli-pass-1", "--requirepass", "req-pass-1", "ping"],
    }
    found = set(
        param_secrets({**params, "password_env": "REDIS_PW", "headers_env": {"X-Key": "K"}})
    )
    assert "REDIS_PW" not in found  # the name of a variable: an error may say it is unset
    assert param_secrets({"key": "schema", "value": "v2"}) == []  # a state entry's name
    assert {"pwd-value-1", "pk-value-1", "cli-pass-1", "req-pass-1"} <= found
    assert "ping" not in found and "redis-cli" not in found
    event = Redactor(found).value({"params": params})
    for secret in ("pwd-value-1", "pk-value-1", "cli-pass-1", "req-pass-1"):
        assert secret not in repr(event)


def test_text_masking_is_one_union() -> None:
    # Only the actions' masking knew quoted values and --masterauth; only the packages'
    # knew a token alone before '@'. Neither knew an HTTP auth scheme.
    text = (
        "PASSWORD='two words' --masterauth m-secret-1 https://ghp_tok1@github.com/x "
        "Authorization: Bearer bearer-tok-1"
    )
    masked = mask_text(text)
    for secret in ("two words", "m-secret-1", "ghp_tok1", "bearer-tok-1"):
        assert secret not in masked
    assert masked.startswith(f"PASSWORD={MASK} --masterauth {MASK} https://{MASK}@github.com/x")


def test_references_stay_but_a_dollar_password_does_not() -> None:
    assert mask_text("REDIS_PASSWORD=${REDIS_PASSWORD}") == "REDIS_PASSWORD=${REDIS_PASSWORD}"
    assert mask_text("--requirepass $REDIS_PASSWORD") == "--requirepass $REDIS_PASSWORD"
    assert mask_text("PASSWORD=$ecret1") == f"PASSWORD={MASK}"
    assert mask_secrets(["redis-cli", "-a", "$ecret1"]) == ["redis-cli", "-a", MASK]


def test_no_module_keeps_its_own_copy() -> None:
    """Secret key lists and URL redaction live in foundation.secrets only."""
    copies = []
    for path in ROOT.glob("[aocs]*/**/*.py"):
        if path.is_relative_to(ROOT / "foundation") or ".venv" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            copies += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name in {"_SECRET_QUERY_KEYS", "redact_url", "Redactor", "is_secret_name"}
                or name.startswith("_SECRET_P")
            ]
    assert copies == []


_TEXT = st.text(alphabet=st.sampled_from('ab"\\\n\tü€\x01/ '), max_size=12)


@given(
    secrets_=st.lists(_TEXT.filter(lambda s: len(s) >= 3), min_size=1, max_size=3),
    data=st.recursive(
        _TEXT | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.none(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=8,
    ),
)
def test_a_json_line_without_a_secret_means_nothing_to_mask(secrets_: list[str], data: Any) -> None:
    # The event log walks an event for secrets only when its JSON line shows one: that must
    # never skip an event whose strings hold a secret (quotes, backslashes, control
    # characters and non-ASCII included, which JSON escapes or keeps).
    redactor = Redactor(secrets_)
    line = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
    if redactor.value(data) != data:
        assert redactor.found_in_json(line)
    planted = {"k": f"x{secrets_[0]}y"}
    assert redactor.found_in_json(orjson.dumps(planted).decode())
