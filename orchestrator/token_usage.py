"""Model tokens and requests a run's LLM steps used, summed from ``step_finished.usage``,
and how people see them. Light on purpose (no rich, no plan models): ``orchestrator
status`` formats them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TokenUsage", "format_tokens", "tokens_by_kind"]


@dataclass(slots=True)
class TokenUsage:
    """Model tokens in and out and model requests, summed over ``step_finished.usage``
    (every attempt's: a retried step's model calls were made and paid for)."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0

    def add(self, usage: Any) -> None:
        """Add one event's ``usage`` mapping; anything else (or a non-integer figure) adds 0."""
        if not isinstance(usage, Mapping):
            return
        for key in ("input_tokens", "output_tokens", "requests"):
            value = usage.get(key)
            if type(value) is int and value > 0:
                setattr(self, key, getattr(self, key) + value)

    def __iadd__(self, other: TokenUsage) -> TokenUsage:
        self.add(other.as_dict())
        return self

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.requests)

    def as_dict(self) -> dict[str, int]:
        """``{input_tokens, output_tokens, requests}``: the JSON shape of ``usage``."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
        }


def tokens_by_kind(usage: Any) -> dict[str, int]:
    """Each positive ``*_tokens`` figure of one event's ``usage`` by its kind (``input``,
    ``output``, ``cache_read``, ...); anything else (a non-mapping, a non-integer) counts 0."""
    if not isinstance(usage, Mapping):
        return {}
    return {
        key.removesuffix("_tokens"): value
        for key, value in usage.items()
        if isinstance(key, str) and key.endswith("_tokens") and type(value) is int and value > 0
    }


def _count(value: int) -> str:
    if value < 10_000:
        return str(value)
    return f"{value / 1000:.1f}k" if value < 1_000_000 else f"{value / 1_000_000:.2f}M"


def format_tokens(usage: TokenUsage | Any) -> str:
    """``12.3k in, 456 out, 7 requests`` (a :class:`TokenUsage` or a ``usage`` mapping);
    ``""`` when all are zero, so views without model calls look as before."""
    if not isinstance(usage, TokenUsage):
        raw, usage = usage, TokenUsage()
        usage.add(raw)
    if not usage:
        return ""
    requests = f"{usage.requests} request{'s' if usage.requests != 1 else ''}"
    return f"{_count(usage.input_tokens)} in, {_count(usage.output_tokens)} out, {requests}"
