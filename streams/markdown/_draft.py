"""The plan being assembled from a Markdown file, every value with the line it came from.

The drafts are mutable on purpose: sections fill them in whatever order the file has them
(rollback before focus areas, say), and :mod:`streams.markdown._emit` writes them out once all
sections are read. Values are plan values already (fractions, ``15m..30m``, identifiers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_CAPS",
    "UNCLASSIFIED",
    "UNCLASSIFIED_CAP",
    "AgentDraft",
    "PlanDraft",
    "Sourced",
    "StreamDraft",
]

T = TypeVar("T")

# Used when the file has no resource allocation matrix: the classes phase documents use.
DEFAULT_CAPS: dict[str, int | None] = {"cpu": 2, "io": 3, "network": 2, "light": None}
# The class of agents the matrix does not list; one at a time, so that an agent nobody
# classified cannot overload anything until the user gives it a class.
UNCLASSIFIED = "unclassified"
UNCLASSIFIED_CAP = 1


@dataclass(frozen=True, slots=True)
class Sourced(Generic[T]):
    """A value, the 1-based source line it came from (0: none) and a note for the YAML
    comment beside it (words of the source line that have no plan field)."""

    value: T
    line: int
    note: str = ""


@dataclass(slots=True)
class StreamDraft:
    """One focus area on its way to a plan stream."""

    id: str
    name: str
    line: int
    heading: str
    number: int | None
    title: str = ""
    priority: Sourced[str] = Sourced("medium", 0)
    # Plain StreamSpec fields in the order they are written: methodology,
    # success_probability, risk, timeline, current_state, strategy, expected_improvement.
    fields: dict[str, Sourced[object]] = field(default_factory=dict)
    team: list[str] = field(default_factory=list)
    team_line: int = 0
    lead: Sourced[str] | None = None
    dependencies: Sourced[str] | None = None
    depends_on: list[Sourced[str]] = field(default_factory=list)
    steps: list[Sourced[str]] = field(default_factory=list)
    # The agent the document names for a step, by step index (others go to the lead).
    step_agents: dict[int, str] = field(default_factory=dict)
    group: Sourced[str] | None = None
    threshold: Sourced[float] | None = None
    criteria: list[Sourced[str]] = field(default_factory=list)
    evidence: list[Sourced[tuple[str, str]]] = field(default_factory=list)
    rollback_steps: list[Sourced[str]] = field(default_factory=list)
    rollback_budget: Sourced[str] | None = None
    rollback_time: Sourced[str] | None = None
    rollback_line: int = 0


@dataclass(slots=True)
class AgentDraft:
    """An agent's class and role, from the resource allocation matrix (line 0: defaulted)."""

    resource_class: str
    role: str
    line: int
    display_name: str = ""
    token_limit: Sourced[int] | None = None
    # The .claude/agents definition it came from, and that file's model and tools.
    definition: str = ""
    model: str | None = None
    tools: tuple[str, ...] = ()


@dataclass(slots=True)
class PlanDraft:
    """The whole plan: name, title, summary, caps, agents, resources and streams."""

    plan_id: str
    title: Sourced[str] | None = None
    summary: Sourced[str] | None = None
    caps: dict[str, int | None] = field(default_factory=dict)
    caps_line: int = 0
    agents: dict[str, AgentDraft] = field(default_factory=dict)
    resources: Sourced[list[str]] | None = None
    streams: list[StreamDraft] = field(default_factory=list)
    token_limit: Sourced[int] | None = None
