"""The phase plan: pydantic v2 models of a plan file, ``extra="forbid"`` throughout.

A plan can say everything the users' phase documents say: per focus area (stream) its title,
priority, methodology, success probability, risk, timeline, agent team, dependencies,
implementation sequence (steps), success gate with a confidence threshold, mandatory
evidence and rollback procedure with its recovery budget; per agent its resource class and
its scope (the actions it may run); per resource class its concurrency cap.

Cross-references (agents, resources, classes, needs, depends_on) are checked by
:mod:`streams.validation`, which knows where each value sits in the file.
"""

# No `from __future__ import annotations` here: pydantic would evaluate every field's
# annotation from its string again (some hundred evaluations when the models are built).
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from streams.durations import Duration, Timeline

__all__ = [
    "AgentSpec",
    "ClaudeCodeDriverSpec",
    "ClaudeCodeSpec",
    "DriverSpec",
    "EvidenceRequirement",
    "FilesSpec",
    "GateCriterion",
    "GateSpec",
    "LlmDriverSpec",
    "LlmSpec",
    "Plan",
    "PlanDefaults",
    "Priority",
    "RollbackSpec",
    "StepSpec",
    "StreamSpec",
    "UndoSpec",
]

Identifier = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        max_length=128,
        description="Letters, digits, '-', '_' and '.', starting with a letter or digit.",
    ),
]


def name_problem(value: str) -> str:
    """Why ``value`` is not a :data:`Name`, with the rule (for a refused name)."""
    bad = next((c for c in value if c == "/" or not c.isprintable()), None)
    if bad is not None:
        return f"name {value!r} holds {bad!a} at position {value.index(bad) + 1}: " + _NAME_RULE
    return f"{value!r} is not a name: " + _NAME_RULE


_NAME_RULE = (
    "a name may hold letters, digits, spaces, punctuation and symbols, but no '/' and no "
    "control, format (bidi, zero-width) or line-break characters, and is not '', '.' or '..'"
)
# Printable (Python's str.isprintable: no category C or Z but the space) and no '/'; not
# '', '.' or '..'. A pattern, so pydantic checks it in Rust; describe_error words the
# refusal with name_problem. Written with one Unicode class, used twice: Rust compiles each
# use of a class into a large automaton (0.2 ms for the earlier form with six), once for
# every Name field in every model's validator. Up to two dots, then a character that is not
# one; or three dots; then anything: every name but '.' and '..'.
_NAME_FIRST = r"(?:[^./\p{C}\p{Z}]| )"
NAME_PATTERN = rf"^(?:\.{{0,2}}{_NAME_FIRST}|\.\.\.)(?:\.|{_NAME_FIRST})*$"
#: Any printable text but '/': references (team members, locks, needs, ...) and the keys
#: of ``agents:`` and ``caps:``, which are looser than an :data:`Identifier`.
Name = Annotated[
    str,
    Field(pattern=NAME_PATTERN),
    # Python's re, which JSON Schema tools use, has no \p{...} classes: no pattern there.
    WithJsonSchema({"type": "string", "minLength": 1, "description": _NAME_RULE}),
]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{value!r} holds a NUL character, which no process argument holds")
    return value


#: A string handed to a process (argv, environment): no NUL.
ProcessText = Annotated[str, AfterValidator(_no_nul)]
Priority = Literal["critical", "high", "medium", "low"]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]

_TIMELINE_SCHEMA = {
    "anyOf": [
        {"type": "string", "description": "expected..limit, e.g. 15m..30m, or one duration"},
        {"type": "number", "minimum": 0},
        {
            "type": "object",
            "properties": {
                "expected": {"type": ["string", "number"]},
                "limit": {"type": ["string", "number"]},
            },
            "additionalProperties": False,
        },
    ]
}
TimelineField = Annotated[Timeline, WithJsonSchema(_TIMELINE_SCHEMA, mode="validation")]


def _empty_list() -> list[Any]:
    return []


def _empty_dict() -> dict[Any, Any]:
    return {}


# The default factories are Python functions, not `list` and `dict`: pydantic inspects a
# factory's signature whenever it builds a schema holding the field, and for the builtin
# `list` inspect.signature takes 0.5 ms (a Python function: 7 us).


class _Model(BaseModel):
    # Deferred: only Plan (below) builds its validator at import, with every model it holds
    # inside it; each other model builds its own when it is first used alone, which
    # validating a plan never does.
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, strict=True, defer_build=True
    )


class PlanDefaults(_Model):
    """Step settings used where a step does not say otherwise."""

    timeout: Duration = Field(default=600.0, description="Per-attempt step timeout.")
    retries: int = Field(default=0, ge=0, le=100)
    backoff: Duration = Field(default=1.0, description="First retry delay; doubles each retry.")
    backoff_max: Duration = Field(default=60.0)
    lock_timeout: Duration | None = Field(
        default=None,
        description="How long a step waits for its slot and locks before it re-queues "
        "with backoff (logged); None waits as long as it takes.",
    )
    token_limit: int = Field(
        default=4000, ge=64, description="Token limit of each agent's context package."
    )
    agent_class: Name | None = Field(
        default=None,
        description="Resource class of agents taken from agents_from definitions that the "
        "plan's agents: does not give one.",
    )


class DriverSpec(_Model):
    """An external process that performs the agent's steps (an LLM CLI wrapper, a script).

    For each step it gets one JSON document on stdin and answers one on stdout; see
    ``docs/agent-protocol.md``. It runs with no shell, an explicit environment (``env`` plus
    the names in ``pass_env`` taken from the daemon's), in ``cwd`` (relative to the run's
    working directory).
    """

    command: list[ProcessText] = Field(min_length=1, description="argv of the agent process.")
    cwd: ProcessText | None = None
    env: dict[ProcessText, ProcessText] = Field(default_factory=_empty_dict)
    pass_env: list[ProcessText] = Field(default_factory=_empty_list)
    answer_limit: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest answer accepted, in bytes.",
    )
    kill_grace: Duration = Field(default=5.0, description="SIGTERM to SIGKILL, on a hang.")
    tools: Literal["none", "mcp"] = Field(
        default="none",
        description="mcp: serve the agent's `can` actions as an MCP tool server for each "
        "sentence step (every call through the daemon's gate); the process gets "
        "ORCH_TOOLS_SOCKET, ORCH_TOOLS_TOKEN and ORCH_MCP_CONFIG (docs/llm-agents.md).",
    )


class LlmSpec(_Model):
    """A model that performs the agent's steps, its tools being the agent's ``can`` actions
    (``docs/llm-agents.md``). ``openai`` speaks the Chat Completions API (OpenAI, Ollama,
    vLLM, llama.cpp's server); ``anthropic`` the Messages API."""

    provider: Literal["openai", "anthropic"] = Field(
        description="openai: the Chat Completions API (OpenAI, Ollama, vLLM, llama.cpp); "
        "anthropic: the Messages API."
    )
    model: str = Field(min_length=1, max_length=256, description="The provider's model name.")
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="The API's base URL, e.g. http://127.0.0.1:11434/v1 for Ollama.",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The NAME of the environment variable holding the API key, never the key.",
    )
    max_turns: int = Field(default=30, ge=1, le=1000, description="Model requests per step.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Input + output tokens per step attempt."
    )
    retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of a failed model request (connection, 429, 5xx, garbage).",
    )
    retry_backoff: Duration = Field(
        default=1.0, description="First delay between model retries; doubles each retry."
    )
    request_timeout: Duration = Field(default=120.0, description="Deadline of one request.")


class LlmDriverSpec(_Model):
    """``driver: {llm: {...}}``: a model performs the agent's steps through the daemon."""

    llm: LlmSpec = Field(description="The model that performs the agent's steps.")


class ClaudeCodeSpec(_Model):
    """Claude Code (``claude -p``) performing the agent's steps with the daemon's tools only:
    the step's MCP tool server in ``--mcp-config``, ``--allowedTools`` limited to it."""

    command: list[ProcessText] = Field(
        default_factory=lambda: ["claude"], min_length=1, description="argv before the flags."
    )
    model: str | None = Field(default=None, description="--model (default: Claude Code's).")
    max_turns: int | None = Field(default=None, ge=1, description="--max-turns.")
    pass_env: list[ProcessText] = Field(
        default_factory=_empty_list, description="Names of the daemon's variables passed through."
    )


class ClaudeCodeDriverSpec(_Model):
    """``driver: {claude_code: {...}}``: Claude Code performs the agent's steps."""

    claude_code: ClaudeCodeSpec = Field(description="How to run claude -p.")


#: The union's tags, by the key that selects each member. pydantic puts the tag into an
#: error's location (``driver.<tag>.llm.provider``); a tag that starts with a capital is
#: left out of the location shown to the user, like pydantic's model names, so it reads as
#: written (``driver.llm.provider``).
_DRIVER_TAGS = {"llm": "LlmDriver", "claude_code": "ClaudeCodeDriver"}
_COMMAND_TAG = "CommandDriver"


def _driver_kind(value: Any) -> str:
    if isinstance(value, dict):
        return next((t for k, t in _DRIVER_TAGS.items() if k in value), _COMMAND_TAG)
    if isinstance(value, LlmDriverSpec):
        return _DRIVER_TAGS["llm"]
    if isinstance(value, ClaudeCodeDriverSpec):
        return _DRIVER_TAGS["claude_code"]
    return _COMMAND_TAG


AnyDriverSpec = Annotated[
    Annotated[DriverSpec, Tag(_COMMAND_TAG)]
    | Annotated[LlmDriverSpec, Tag(_DRIVER_TAGS["llm"])]
    | Annotated[ClaudeCodeDriverSpec, Tag(_DRIVER_TAGS["claude_code"])],
    Discriminator(_driver_kind),
]


class AgentSpec(_Model):
    """A named specialist: its resource class and the actions it may run (its scope).

    With a ``driver``, an external process performs the agent's steps, including steps
    written as plain sentences.
    """

    resource_class: Name = Field(alias="class", description="A key of the plan's caps.")
    can: list[Name] = Field(default_factory=_empty_list, description="Actions this agent may run.")
    role: str | None = Field(default=None, description="What the specialist is for.")
    display_name: str | None = Field(
        default=None, description="How people name it (e.g. a .claude/agents definition's)."
    )
    driver: AnyDriverSpec | None = None
    token_limit: int | None = Field(
        default=None, ge=64, description="This agent's context-package limit (default: plan's)."
    )
    instructions: str | None = Field(
        default=None,
        description="The agent's own instructions (Markdown), carried by its context package; "
        "an agents_from definition's body.",
    )
    claude_tools: list[str] = Field(
        default_factory=_empty_list,
        description="The Claude Code tools of its agents_from definition, as written; those "
        "with no action here are reported by validate.",
    )


class UndoSpec(_Model):
    """How to revert one completed step: an action run by the step's agent."""

    action: Name
    with_: dict[str, Any] = Field(default_factory=_empty_dict, alias="with")
    timeout: Duration | None = None


class StepSpec(_Model):
    """One step of a stream's implementation sequence: an ``action`` with parameters, or an
    ``instruction`` in plain words for an agent with an external driver."""

    id: Identifier
    agent: Name
    action: Name | None = None
    instruction: str | None = Field(
        default=None, min_length=1, description="A sentence for an agent with a driver."
    )
    with_: dict[str, Any] = Field(default_factory=_empty_dict, alias="with")
    title: str | None = None
    locks: list[Name] = Field(default_factory=_empty_list)
    timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    lock_timeout: Duration | None = None
    needs: list[Name] | None = Field(
        default=None,
        description="Steps of the same stream that must succeed first; "
        "default: the previous step. [] starts with the stream.",
    )
    idempotent: bool = Field(default=False, description="Safe to run again after a crash.")
    undo: UndoSpec | None = None
    evidence: list[Name] = Field(
        default_factory=_empty_list, description="Ids of the stream's evidence this step provides."
    )
    gpus: int = Field(
        default=0,
        ge=0,
        le=64,
        description="GPUs the step needs: the least-loaded by NVML, given to it as "
        "CUDA_VISIBLE_DEVICES.",
    )
    gpu_exclusive: bool = Field(
        default=True,
        description="No other step uses this step's GPUs meanwhile (false: shared with other "
        "non-exclusive steps).",
    )
    on_no_gpu: Literal["fail", "skip"] = Field(
        default="fail",
        description="With gpus: and no NVIDIA driver or GPU here: fail the step, or skip it.",
    )


class GateCriterion(_Model):
    """One success criterion over measured metrics, e.g. ``db.response_ms.p50 < 100``."""

    expr: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)


class GateSpec(_Model):
    """The stream's success gate: passes when the weighted share of criteria met reaches
    ``threshold``."""

    threshold: Probability = 1.0
    criteria: list[GateCriterion | str] = Field(default_factory=_empty_list)
    require_verified: bool = Field(
        default=False,
        description="Only evidence collected by the daemon itself counts: an agent's claim "
        "satisfies no requirement.",
    )


class EvidenceRequirement(_Model):
    """A piece of mandatory evidence the stream must end with."""

    id: Identifier
    description: str = ""
    verified: bool = Field(default=False, description="Must be collected by the daemon.")
    kinds: list[str] = Field(
        default_factory=_empty_list,
        description="The kinds of daemon-collected evidence that satisfy it (an evidence "
        "record's source: command, query, http, docker, redis, nvml, compose, state); empty: "
        "any the declaring step's action collects. A claim counts only if it names this id.",
    )


class RollbackSpec(_Model):
    """What to do when the stream fails: its steps, within a recovery budget."""

    budget: Duration | None = Field(default=None, description="e.g. 2m ('2-minute recovery')")
    steps: list[StepSpec] = Field(default_factory=_empty_list)


class StreamSpec(_Model):
    """A focus area run as one stream of steps by its agent team."""

    id: Identifier
    title: str | None = None
    priority: Priority = "medium"
    methodology: str | None = None
    success_probability: Probability | None = None
    risk: Probability | None = Field(default=None, description="Planner's risk, e.g. 0.15.")
    risk_level: Literal["low", "medium", "high", "critical"] | None = None
    timeline: TimelineField | None = None
    group: Name | None = Field(default=None, description="Execution group, e.g. 'stream-2'.")
    current_state: str | None = None
    strategy: str | None = None
    expected_improvement: str | None = None
    team: list[Name] = Field(min_length=1)
    lead: Name | None = Field(
        default=None,
        description="The agent that performs steps written as plain sentences; default: the "
        "first team member.",
    )
    depends_on: list[Name] = Field(default_factory=_empty_list)
    steps: list[StepSpec] = Field(min_length=1)
    gate: GateSpec | None = None
    evidence: list[EvidenceRequirement] = Field(default_factory=_empty_list)
    rollback: RollbackSpec | None = None

    def signature(self) -> str:
        """What identifies "the same stream" across runs and plans, for its history: its id,
        methodology and the sequence of actions it runs (sentence steps count as one kind)."""
        shape = {
            "id": self.id,
            "methodology": (self.methodology or "").lower(),
            "actions": [s.action or "instruction" for s in self.steps],
        }
        encoded = json.dumps(shape, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    @model_validator(mode="before")
    @classmethod
    def _sentence_steps(cls, data: Any) -> Any:
        """A step written as a plain string is an instruction for the stream's lead."""
        if not isinstance(data, dict):
            return data
        # Before validation nothing has checked a shape yet: `team` may be a mapping, a
        # number, an empty list; pydantic reports those, this only must not trip on them.
        team = data.get("team")
        lead = data.get("lead") or (team[0] if isinstance(team, list) and team else None)
        data = dict(data)
        for key in ("steps",):
            data[key] = _expand_sentences(data.get(key), lead, "step")
        rollback = data.get("rollback")
        if isinstance(rollback, dict) and isinstance(rollback.get("steps"), list):
            data["rollback"] = {
                **rollback,
                "steps": _expand_sentences(rollback["steps"], lead, "rollback"),
            }
        return data


def _expand_sentences(steps: Any, lead: Any, prefix: str) -> Any:
    if not isinstance(steps, list) or not isinstance(lead, str):
        return steps
    return [
        {"id": f"{prefix}-{i}", "agent": lead, "instruction": item}
        if isinstance(item, str)
        else item
        for i, item in enumerate(steps, 1)
    ]


class FilesSpec(_Model):
    """Where file actions (``file.*``, an agent's file tools) may work besides the run's
    working directory: ``roots`` names folders (relative to the plan file, or absolute)
    that a call picks with ``root: NAME`` (``streams/file_roots.py`` says which are usable)."""

    roots: dict[Identifier, Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=_empty_dict,
        description="Folders by name (relative to the plan file, or absolute): each must "
        "exist, be reached through no symlink and not overlap the working directory or "
        "another root.",
    )


class Plan(_Model):
    """A phase plan file."""

    model_config = ConfigDict(defer_build=False)  # built at import: every command uses it

    version: Literal[1] = 1
    plan: Identifier = Field(description="The plan's name.")
    title: str | None = None
    summary: str | None = None
    caps: dict[Name, Annotated[int, Field(ge=1)] | None] = Field(
        description="Concurrency cap per resource class; null means unlimited."
    )
    resources: list[Identifier] = Field(
        default_factory=_empty_list, description="Shared components that steps may lock."
    )
    defaults: PlanDefaults = PlanDefaults()
    min_confidence: Probability | None = None
    agents_from: list[str] = Field(
        default_factory=_empty_list,
        description="Folders of Claude Code agent definitions (NAME.md, relative to the plan "
        "file) whose agents join agents:; an agents: entry of the same id overrides them.",
    )
    token_budget: int | None = Field(
        default=None,
        ge=1,
        description="Model tokens (input + output) all LLM agents of one run may use.",
    )
    files: FilesSpec | None = Field(
        default=None,
        description="Folders besides the working directory that file actions may use.",
    )
    agents: dict[Name, AgentSpec] = Field(min_length=1)
    streams: list[StreamSpec] = Field(min_length=1)

    @field_validator("caps")
    @classmethod
    def _caps_not_empty(cls, caps: dict[str, int | None]) -> dict[str, int | None]:
        if not caps:
            raise ValueError("name at least one resource class, e.g. {cpu: 2, light: null}")
        return caps

    def agent_class(self, agent: str) -> str:
        return self.agents[agent].resource_class

    def total_steps(self) -> int:
        return sum(len(s.steps) for s in self.streams)
