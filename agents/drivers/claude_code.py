"""The ``claude-code`` driver profile: Claude Code (``claude -p``) performs a sentence step,
with the daemon's tools as its only tools.

For each attempt :class:`ClaudeCodeDriver` serves the agent's ``can`` actions as the step's
MCP tool server (:mod:`agents.drivers.mcp_tools`, every call through the
:class:`~agents.tools.ToolGate`; its MCP config names the ``orchestrator agent-tools``
bridge with the server's address and token) and runs::

    claude -p TASK --mcp-config FILE --strict-mcp-config
           --allowedTools mcp__orchestrator__file_read,... --output-format json
           --append-system-prompt CONTEXT_PACKAGE [--model M] [--max-turns N]

with no shell, in its own session (its tree is ended with it), in the run's working
directory, with the step's environment plus ``pass_env`` and the tool server's variables.
Its JSON result (``{type: result, subtype, is_error, result, usage, num_turns}``) becomes the
step's result: ``result`` text as the summary, ``usage`` as the step's usage, the gate's
evidence and one undo record for what its tool calls changed. Anything else (a failed
start, a non-zero exit, output that is not that JSON) fails the step with the reason.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError

from agents.actions.command import BoundedCapture, stop_process_group
from agents.actions.undo_sequence import undo_of
from agents.base import ActionResult, Usage
from agents.drivers.base import DriverCall
from agents.drivers.mcp_tools import MCP_SERVER_NAME, serve_step_tools
from agents.processes.containment import end_step_process, open_step_process
from agents.registry import ActionRegistry
from agents.tools import LockService, ToolSession, tool_name
from foundation.secrets import env_secrets, scrub
from streams.model import ClaudeCodeSpec, StepSpec

__all__ = ["MCP_SERVER_NAME", "ClaudeCodeDriver", "ClaudeCodeParams", "claude_argv"]

_OUTPUT_LIMIT = 4 * 1024 * 1024
_STDERR_LIMIT = 16 * 1024
_KILL_GRACE_S = 5.0
_SUMMARY = 500


class ClaudeCodeParams(BaseModel):
    """One sentence step for Claude Code (built by :meth:`for_step`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claude: ClaudeCodeSpec
    instruction: str
    system: str
    can: tuple[str, ...] = ()

    @classmethod
    def for_step(
        cls, *, claude: ClaudeCodeSpec, step: StepSpec, system: str, can: list[str]
    ) -> ClaudeCodeParams:
        assert step.instruction is not None, "only sentence steps go to Claude Code"
        task = f"{step.title}\n\n{step.instruction}" if step.title else step.instruction
        return cls(claude=claude, instruction=task, system=system, can=tuple(can))


class _ClaudeResult(BaseModel):
    """The fields of ``claude -p --output-format json`` this driver reads."""

    model_config = ConfigDict(extra="ignore")

    type: str
    subtype: str = "success"
    is_error: bool = False
    result: str = ""
    num_turns: int = 0
    usage: dict[str, Any] = {}


def claude_argv(params: ClaudeCodeParams, mcp_config: Path, tools: list[str]) -> list[str]:
    """The argv of one step (see the module docstring); ``tools`` are the action names."""
    spec = params.claude
    allowed = ",".join(f"mcp__{MCP_SERVER_NAME}__{tool_name(t)}" for t in tools)
    argv = [
        *spec.command,
        "-p",
        params.instruction,
        "--mcp-config",
        str(mcp_config),
        "--strict-mcp-config",
        "--allowedTools",
        allowed,
        "--output-format",
        "json",
        "--append-system-prompt",
        params.system,
    ]
    if spec.model:
        argv += ["--model", spec.model]
    if spec.max_turns:
        argv += ["--max-turns", str(spec.max_turns)]
    return argv


class ClaudeCodeDriver:
    """The :class:`~agents.drivers.base.AgentDriver` of ``driver: {claude_code: ...}``."""

    def __init__(self, registry: ActionRegistry, locks: LockService) -> None:
        self._registry = registry
        self._locks = locks

    @property
    def name(self) -> str:
        return "claude-code"

    async def perform(self, call: DriverCall) -> ActionResult:
        """Run ``claude -p`` for the step; see the module docstring."""
        params = call.params
        if not isinstance(params, ClaudeCodeParams):
            raise TypeError(f"the claude-code driver takes ClaudeCodeParams, not {params!r}")
        ctx = call.context
        tools = [t for t in params.can if t in self._registry]
        async with serve_step_tools(
            self._registry, self._locks, call.events, ctx, params.can
        ) as served:
            env = {**ctx.env, **served.env()}
            for name in params.claude.pass_env:
                if name in os.environ:
                    env[name] = os.environ[name]
            argv = claude_argv(params, served.config, tools)
            code, out, err = await _run(argv, env, ctx.workdir)
        secrets = env_secrets(env)
        program = [scrub(a, secrets) for a in argv[:1]]
        return _result(code, out, err, served.session, program, secrets)


async def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int | None, bytes, str]:
    """Run ``argv`` to its end; (exit status or None if it could not start, stdout, stderr
    excerpt). Cancellation stops its whole tree and passes through."""
    try:
        step = await open_step_process(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL)
    except OSError as exc:
        return None, b"", f"could not start {argv[0]!r}: {exc.strerror or exc}"
    process = step.process
    out = bytearray()
    err = BoundedCapture(_STDERR_LIMIT)

    async def read_out() -> None:
        assert process.stdout is not None
        async for chunk in process.stdout:
            if len(out) < _OUTPUT_LIMIT:
                out.extend(chunk[: _OUTPUT_LIMIT - len(out)])

    async def read_err() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            err.feed(chunk)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_out)
            tg.start_soon(read_err)
            await process.wait()
            await end_step_process(step)
            tg.cancel_scope.deadline = anyio.current_time() + _KILL_GRACE_S
    finally:
        await stop_process_group(process, _KILL_GRACE_S)
        await end_step_process(step)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    return process.returncode, bytes(out), err.text()


def _result(
    code: int | None,
    out: bytes,
    err: str,
    session: ToolSession,
    program: list[str],
    secrets: list[str],
) -> ActionResult:
    common: dict[str, Any] = {
        "evidence": tuple(session.evidence),
        "undo": undo_of(session.undo),
    }
    if code is None:
        return ActionResult(ok=False, summary=scrub(err, secrets), **common)
    try:
        parsed = _ClaudeResult.model_validate_json(out)
    except ValidationError:
        head = scrub(out[:200].decode("utf-8", "replace"), secrets)
        tail = scrub(err.strip()[-300:], secrets)
        return ActionResult(
            ok=False,
            summary=f"claude exited {code} without its JSON result: {head!r} {tail}".strip(),
            exit_code=code,
            **common,
        )
    usage = Usage(
        int(parsed.usage.get("input_tokens", 0) or 0),
        int(parsed.usage.get("output_tokens", 0) or 0),
        parsed.num_turns,
    )
    text = scrub(parsed.result, secrets)
    line = text.strip().split("\n", 1)[0][:_SUMMARY]
    ok = code == 0 and not parsed.is_error and parsed.subtype == "success"
    return ActionResult(
        ok=ok,
        summary=line or (parsed.subtype if not ok else "done"),
        exit_code=code,
        output=text,
        usage=usage,
        details={"program": program, "subtype": parsed.subtype, "turns": parsed.num_turns},
        **common,
    )
