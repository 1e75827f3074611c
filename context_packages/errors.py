"""Errors raised while building context packages, in the tree of
:class:`foundation.errors.OrchestratorError`::

    OrchestratorError
    └── ContextPackageError          building an agent's context package failed
        ├── UnknownAgent             the plan has no agent of that name
        ├── PackageTooLarge          even the minimal package exceeds the token limit
        └── TokenizerUnavailable     the offline tokenizer data cannot be loaded
"""

from __future__ import annotations

from collections.abc import Sequence

from foundation.errors import OrchestratorError

__all__ = ["ContextPackageError", "PackageTooLarge", "TokenizerUnavailable", "UnknownAgent"]


class ContextPackageError(OrchestratorError):
    """Base for failures to build an agent's context package."""


class UnknownAgent(ContextPackageError):
    """``agent`` is not one of the plan's agents (``known``)."""

    exit_code = 2

    def __init__(self, agent: str, known: Sequence[str]) -> None:
        self.agent = agent
        self.known = tuple(known)
        super().__init__(
            f"no agent {agent!r} in the plan; its agents are: {', '.join(self.known) or '(none)'}"
        )


class PackageTooLarge(ContextPackageError):
    """The minimal package of ``agent`` (header, role and scope, own steps) needs
    ``minimum`` tokens of ``tokenizer``, more than its ``limit``."""

    exit_code = 2

    def __init__(self, agent: str, limit: int, minimum: int, tokenizer: str) -> None:
        self.agent = agent
        self.limit = limit
        self.minimum = minimum
        self.tokenizer = tokenizer
        super().__init__(
            f"context package for agent {agent!r} cannot fit its limit of {limit} tokens: "
            f"its header, role and scope and own steps alone take {minimum} {tokenizer} tokens "
            f"(fix: set agents.{agent}.token_limit, or defaults.token_limit, to at least "
            f"{minimum}, or give the agent fewer steps)"
        )


class TokenizerUnavailable(ContextPackageError):
    """The tokenizer ``name`` cannot be loaded; ``reason`` says why and what to install."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"tokenizer {name!r} unavailable: {reason}")
