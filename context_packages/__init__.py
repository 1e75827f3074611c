"""Context packages: the token-limited briefing each agent of a plan receives.

:func:`build_package` gathers an agent's sections from the plan (:mod:`.sections`), cuts
them in the declared priority order until the Markdown fits the agent's token limit
(:mod:`.builder`), and returns an :class:`AgentPackage` with its exact size for a pluggable
:class:`Tokenizer` (offline cl100k_base by default), its cut list and SHA-256
(:mod:`.package`). Secrets in step parameters are masked (:mod:`foundation.secrets`).

Owns building, sizing, cutting and rendering those packages and the tokenizer seam. Must
not import ``orchestrator`` or ``agents`` (they import it); may import ``streams`` (the plan
it reads) and ``foundation`` (the order ``import-linter`` enforces).
"""

from context_packages.builder import (
    build_package,
    build_packages,
    package_token_limit,
    render_package,
)
from context_packages.errors import (
    ContextPackageError,
    PackageTooLarge,
    TokenizerUnavailable,
    UnknownAgent,
)
from context_packages.package import (
    AgentPackage,
    CutEntry,
    CutSection,
    PackageDocument,
    SectionEntry,
    SectionSize,
    render_markdown,
    sha256_of,
)
from context_packages.sections import (
    CutPriority,
    PackageHeader,
    Section,
    gather_sections,
    package_header,
)
from context_packages.tokenizer import CL100K_BASE, TiktokenTokenizer, Tokenizer, cl100k_base
from foundation.secrets import MASK, is_secret_name, mask_secrets, mask_text

__all__ = [
    "CL100K_BASE",
    "MASK",
    "AgentPackage",
    "ContextPackageError",
    "CutEntry",
    "CutPriority",
    "CutSection",
    "PackageDocument",
    "PackageHeader",
    "PackageTooLarge",
    "Section",
    "SectionEntry",
    "SectionSize",
    "TiktokenTokenizer",
    "Tokenizer",
    "TokenizerUnavailable",
    "UnknownAgent",
    "build_package",
    "build_packages",
    "cl100k_base",
    "gather_sections",
    "is_secret_name",
    "mask_secrets",
    "mask_text",
    "package_header",
    "package_token_limit",
    "render_markdown",
    "render_package",
    "sha256_of",
]
