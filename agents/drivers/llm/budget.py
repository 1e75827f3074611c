"""A run's token budget (``token_budget:`` of the plan), shared by its LLM steps.

Steps running at once each get what is left when they start, so together they can pass the
budget by what they spend concurrently; no step starts once it is spent.
"""

from __future__ import annotations

from agents.base import Usage

__all__ = ["TokenBudget"]


class TokenBudget:
    """``total`` input + output tokens for a run (None: unlimited) and what was spent."""

    __slots__ = ("spent", "total")

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.spent = 0

    def remaining(self) -> int | None:
        """Tokens left (None: unlimited; 0 or less: spent)."""
        return None if self.total is None else self.total - self.spent

    def spend(self, usage: Usage) -> None:
        self.spent += usage.input_tokens + usage.output_tokens
