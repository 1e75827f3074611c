"""The output a step leaves behind: bounded tails of its stdout and stderr, kept with its
result in the run store for every step (succeeded or not).

Actions report one bounded ``output`` excerpt; those that run a process (``command``, an
external agent's driver) append its stderr after a ``[stderr]`` line. :func:`output_fields`
splits that into ``stdout_tail`` (the last :data:`STDOUT_TAIL` characters) and
``stderr_tail`` (the last :data:`STDERR_TAIL`, the 16 KiB the agent protocol promises),
which ``step_finished`` carries. Events are redacted when emitted (and actions scrub the
secrets they were given), so the tails are masked like everything else in the store.

:class:`StepOutput` is one step attempt's tails as the store gives them back
(:meth:`~orchestrator.store.RunStore.step_outputs`), for ``orchestrator evidence`` and
``orchestrator logs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["STDERR_TAIL", "STDOUT_TAIL", "StepOutput", "output_fields", "step_output"]

#: Characters of a step's stdout kept (its end).
STDOUT_TAIL = 4096
#: Characters of a step's stderr kept (its end): 16 KiB, as docs/agent-protocol.md says.
STDERR_TAIL = 16 * 1024
_STDERR_MARK = "\n[stderr]\n"


def output_fields(output: str) -> dict[str, str]:
    """``stdout_tail`` and ``stderr_tail`` of an action's output (each only if non-empty)."""
    stdout, mark, stderr = output.partition(_STDERR_MARK)
    if not mark and output.startswith(_STDERR_MARK.lstrip("\n")):
        stdout, stderr = "", output.removeprefix(_STDERR_MARK.lstrip("\n"))
    fields: dict[str, str] = {}
    if stdout:
        fields["stdout_tail"] = stdout[-STDOUT_TAIL:]
    if stderr:
        fields["stderr_tail"] = stderr[-STDERR_TAIL:]
    return fields


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One finished step attempt's output tails (``""`` when it printed nothing)."""

    seq: int
    ts: str
    stream: str
    step: str
    attempt: int | None
    status: str
    phase: str | None
    stdout_tail: str
    stderr_tail: str
    output_bytes: int | None
    #: The attempt's model usage (``{input_tokens, output_tokens, requests}``), if it had any.
    usage: Mapping[str, Any] | None = None


def step_output(event: Mapping[str, Any]) -> StepOutput | None:
    """The tails of a ``step_finished`` event, or None for any other event."""
    if event.get("event") != "step_finished":
        return None
    stream, step = event.get("stream"), event.get("step")
    if not isinstance(stream, str) or not isinstance(step, str):
        return None
    attempt, size, phase = event.get("attempt"), event.get("output_bytes"), event.get("phase")
    return StepOutput(
        seq=int(event.get("seq", 0)),
        ts=str(event.get("ts", "")),
        stream=stream,
        step=step,
        attempt=attempt if type(attempt) is int else None,
        status=str(event.get("status", "")),
        phase=phase if isinstance(phase, str) else None,
        stdout_tail=str(event.get("stdout_tail") or ""),
        stderr_tail=str(event.get("stderr_tail") or ""),
        output_bytes=size if type(size) is int else None,
        usage=usage if isinstance(usage := event.get("usage"), Mapping) else None,
    )
