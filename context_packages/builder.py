"""Building an agent's context package from a plan, cut to fit its token limit.

The limit is the agent's ``token_limit``, else the plan's ``defaults.token_limit`` (an
explicit ``token_limit`` argument wins over both). All sections are rendered first; while the
Markdown is over the limit, the section of lowest :class:`~context_packages.sections.CutPriority`
still in it is cut whole (never truncated mid-text), so ``cut`` is always the first sections
of the declared cut order, and the last one cut is one without which the package did not fit.
The header, Role and Scope and Your Steps are never cut: when they alone exceed the limit,
:class:`~context_packages.errors.PackageTooLarge` names the agent, the limit and the minimum.
"""

from __future__ import annotations

from context_packages.errors import PackageTooLarge, UnknownAgent
from context_packages.package import (
    AgentPackage,
    CutSection,
    SectionSize,
    render_markdown,
    sha256_of,
)
from context_packages.sections import PackageHeader, Section, gather_sections, package_header
from context_packages.tokenizer import Tokenizer, cl100k_base
from streams.model import Plan

__all__ = ["build_package", "build_packages", "package_token_limit", "render_package"]

_MAX_MINIMUM_ROUNDS = 8


def package_token_limit(plan: Plan, agent: str) -> int:
    """``agent``'s package limit: its own ``token_limit``, else the plan default."""
    spec = plan.agents.get(agent)
    if spec is None:
        raise UnknownAgent(agent, list(plan.agents))
    return spec.token_limit if spec.token_limit is not None else plan.defaults.token_limit


def build_package(
    plan: Plan, agent: str, *, tokenizer: Tokenizer | None = None, token_limit: int | None = None
) -> AgentPackage:
    """Build ``agent``'s package, its Markdown at most its token limit of ``tokenizer``
    (default: offline cl100k_base).

    Raises UnknownAgent when the plan has no such agent, PackageTooLarge when even the
    minimal package does not fit, TokenizerUnavailable when the default tokenizer cannot load.
    """
    limit = token_limit if token_limit is not None else package_token_limit(plan, agent)
    if agent not in plan.agents:
        raise UnknownAgent(agent, list(plan.agents))
    tok = tokenizer if tokenizer is not None else cl100k_base()
    header = package_header(plan, agent)
    material = gather_sections(plan, agent)
    cut_order = sorted((s for s in material if not s.required), key=lambda s: s.priority)

    cut: list[CutSection] = []
    cut_titles: list[str] = []
    while True:
        kept = [s for s in material if s.title not in cut_titles]
        markdown, tokens = render_markdown(header, kept, cut_titles, limit, tok)
        if tokens <= limit:
            break
        if len(cut) == len(cut_order):
            raise PackageTooLarge(
                agent, limit, _minimum(header, kept, cut_titles, tokens, tok), tok.name
            )
        victim = cut_order[len(cut)]
        cut.append(
            CutSection(
                title=victim.title,
                tokens=tok.count(victim.markdown()),
                priority=int(victim.priority),
                reason=f"the package was {tokens} tokens with it, over the limit of {limit}; "
                f"cut priority {int(victim.priority)}, the lowest left",
            )
        )
        cut_titles.append(victim.title)

    return AgentPackage(
        agent=agent,
        token_limit=limit,
        tokens=tokens,
        tokenizer=tok.name,
        sections=tuple(_size(s, tok) for s in kept),
        cut=tuple(cut),
        markdown=markdown,
        sha256=sha256_of(markdown),
    )


def _minimum(
    header: PackageHeader,
    kept: list[Section],
    cut_titles: list[str],
    tokens: int,
    tokenizer: Tokenizer,
) -> int:
    """The smallest limit the minimal package fits: the header states the limit, so the
    size at ``limit = tokens`` may differ (``999`` is one token, ``1000`` two)."""
    minimum = tokens
    for _ in range(_MAX_MINIMUM_ROUNDS):
        _, needed = render_markdown(header, kept, cut_titles, minimum, tokenizer)
        if needed <= minimum:
            break
        minimum = needed
    return minimum


def _size(section: Section, tokenizer: Tokenizer) -> SectionSize:
    return SectionSize(
        section.title, tokenizer.count(section.markdown()), int(section.priority), section.required
    )


def build_packages(plan: Plan, *, tokenizer: Tokenizer | None = None) -> dict[str, AgentPackage]:
    """Every agent's package, by agent name in the plan's order (e.g. to store with a run).

    Raises PackageTooLarge for the first agent whose minimal package does not fit.
    """
    tok = tokenizer if tokenizer is not None else cl100k_base()
    return {agent: build_package(plan, agent, tokenizer=tok) for agent in plan.agents}


def render_package(
    plan: Plan,
    agent: str,
    *,
    as_json: bool = False,
    tokenizer: Tokenizer | None = None,
    token_limit: int | None = None,
) -> str:
    """``agent``'s package as Markdown, or as JSON (:class:`PackageDocument`) when
    ``as_json``: what ``orchestrator package PLAN --agent NAME [--json]`` prints.

    Raises what :func:`build_package` raises.
    """
    package = build_package(plan, agent, tokenizer=tokenizer, token_limit=token_limit)
    return package.to_json() + "\n" if as_json else package.markdown
