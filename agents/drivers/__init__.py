"""Agent drivers: how an agent's steps are performed outside the daemon's built-in actions.

:func:`run_external` runs one step through an agent's own process (``driver: {command:
[...]}`` in the plan), speaking the JSON protocol of ``docs/agent-protocol.md`` whose two
documents are :class:`AgentRequest` and :class:`AgentAnswer`.
"""

from agents.drivers.external import (
    EXTERNAL_ACTION,
    ExternalParams,
    agent_env,
    run_external,
    with_external,
)
from agents.drivers.protocol import (
    PROTOCOL_VERSION,
    AgentAnswer,
    AgentRequest,
    EvidenceClaim,
    PackageInfo,
    describe_errors,
    protocol_schemas,
)

__all__ = [
    "EXTERNAL_ACTION",
    "PROTOCOL_VERSION",
    "AgentAnswer",
    "AgentRequest",
    "EvidenceClaim",
    "ExternalParams",
    "PackageInfo",
    "agent_env",
    "describe_errors",
    "protocol_schemas",
    "run_external",
    "with_external",
]
