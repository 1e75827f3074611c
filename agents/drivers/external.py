"""The external driver: one step performed by an agent's own process.

:class:`ExternalDriver` is the :class:`~agents.drivers.base.AgentDriver` for agents whose plan
entry has a ``driver: {command: [...]}``; it performs each call with :func:`run_external`,
which starts the agent's ``driver.command`` with no shell, in its own session
(so its whole process group can be stopped), in the plan's working directory, with an
explicit environment (plus ``ORCH_STEP_TOKEN``, by which the agent's ``setsid`` descendants
are found and ended with it; see :mod:`agents.processes.containment`, whose watchdog also ends
them if the daemon dies or stops renewing the step's lease); writes the step's
:class:`~agents.drivers.protocol.AgentRequest` to its stdin and closes it; reads at most
``driver.answer_limit`` bytes of stdout and a bounded excerpt of stderr; and validates the
:class:`~agents.drivers.protocol.AgentAnswer` once the process has exited. Every way an
agent can misbehave (a failed start, a non-zero exit, an answer that is not JSON, breaks the
schema or is too large) is a failed :class:`~agents.base.ActionResult` whose summary says
what happened. A hang is ended by the step timeout, which arrives as cancellation: the group
gets SIGTERM, then SIGKILL after ``driver.kill_grace``, and the cancellation goes on.

The agent's metrics and evidence are its own claims: the result carries them marked
``verified=False`` (source ``agent``), so a gate can tell them from what the daemon measured.

With ``driver.tools: mcp`` a sentence step's process also gets the daemon's tools: for the
step, :class:`ExternalDriver` serves the agent's ``can`` actions as the step's MCP tool server
(:func:`~agents.drivers.mcp_tools.serve_step_tools`, every call through a
:class:`~agents.tools.ToolGate` session of the step) and adds ``ORCH_TOOLS_SOCKET``,
``ORCH_TOOLS_TOKEN`` and ``ORCH_MCP_CONFIG`` (an MCP config file naming the ``orchestrator
agent-tools`` bridge) to its environment. The gate's evidence (verified) joins the agent's
claims, and the undo records of its calls become the step's undo.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agents.actions.command import BoundedCapture, stop_process_group
from agents.base import ActionContext, ActionResult, Evidence
from agents.drivers.base import DriverCall
from agents.drivers.protocol import AgentAnswer, AgentRequest, PackageInfo, describe_errors
from agents.processes.containment import end_step_process, open_step_process
from foundation.clock import utc_timestamp
from foundation.secrets import env_secrets
from foundation.secrets import scrub as scrub_secrets
from streams.model import DriverSpec, StepSpec

if TYPE_CHECKING:
    from agents.registry import ActionRegistry
    from agents.tools import LockService
    from context_packages import AgentPackage

__all__ = ["MCP_CONFIG_ENV", "ExternalDriver", "ExternalParams", "agent_env", "run_external"]

#: The variable naming the MCP config file a ``tools: mcp`` agent is given.
MCP_CONFIG_ENV = "ORCH_MCP_CONFIG"

#: Variables the daemon sets for every step (see the step runner) that an agent also gets;
#: ``ORCH_FENCE_<LOCK>`` ones too. Other ``ORCH_`` names are the daemon's own settings.
_STEP_VARIABLES = frozenset(
    {"ORCH_RUN_ID", "ORCH_PLAN", "ORCH_STREAM", "ORCH_STEP", "ORCH_AGENT", "ORCH_ATTEMPT"}
)
_STDERR_LIMIT = 16 * 1024
_OUTPUT_LIMIT = 64 * 1024
_GARBAGE_HEAD = 120


class ExternalParams(BaseModel):
    """What the :class:`ExternalDriver` gives :func:`run_external` for one step: the agent's
    driver, the step (``instruction``, or ``action`` with ``with``), the agent's context
    package and the step timeout (``deadline_s``) the request announces. Built by
    :meth:`for_step`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    driver: DriverSpec
    plan: str
    title: str | None = None
    instruction: str | None = None
    action: str | None = None
    # validation_alias rather than alias: the constructor keeps `with_` for type checkers.
    with_: dict[str, Any] = Field(default_factory=dict, validation_alias="with")
    package_markdown: str
    package_tokens: int = Field(ge=0)
    package_token_limit: int = Field(ge=1)
    package_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    deadline_s: float | None = Field(default=None, ge=0)
    #: The agent's scope: the tools served when ``driver.tools`` is ``mcp``.
    can: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_task(self) -> Self:
        if (self.instruction is None) == (self.action is None):
            raise ValueError("give exactly one of `instruction` and `action`")
        return self

    @classmethod
    def for_step(
        cls,
        *,
        driver: DriverSpec,
        plan: str,
        step: StepSpec,
        package: AgentPackage,
        timeout_s: float | None,
        can: list[str] | tuple[str, ...] = (),
    ) -> ExternalParams:
        """Params for ``step``, performed by the agent whose context package is ``package``
        and whose scope is ``can``, under a ``timeout_s`` step timeout (announced to the
        agent as its deadline)."""
        return cls(
            driver=driver,
            plan=plan,
            title=step.title,
            instruction=step.instruction,
            action=None if step.instruction is not None else step.action,
            with_=dict(step.with_),
            package_markdown=package.markdown,
            package_tokens=package.tokens,
            package_token_limit=package.token_limit,
            package_sha256=package.sha256,
            deadline_s=timeout_s,
            can=tuple(can),
        )


class ExternalDriver:
    """The :class:`~agents.drivers.base.AgentDriver` of agents with a ``driver:`` in the plan:
    performs a step with :func:`run_external`. ``params`` of its calls are
    :class:`ExternalParams` (built by :meth:`ExternalParams.for_step`). ``registry`` and
    ``locks`` serve the tools of ``driver.tools: mcp`` agents (see the module docstring)."""

    __slots__ = ("_locks", "_registry")

    def __init__(
        self, registry: ActionRegistry | None = None, locks: LockService | None = None
    ) -> None:
        self._registry = registry
        self._locks = locks

    @property
    def name(self) -> str:
        return "external"

    async def perform(self, call: DriverCall) -> ActionResult:
        """Run the agent's process for ``call``; see :func:`run_external`. Raises
        RuntimeError for a ``tools: mcp`` step when built without registry and locks."""
        params = call.params
        if not isinstance(params, ExternalParams):
            raise TypeError(f"the external driver takes ExternalParams, not {params!r}")
        if params.driver.tools == "mcp" and params.instruction is not None:
            return await self._with_tools(call, params)
        return await run_external(call.context, params)

    async def _with_tools(self, call: DriverCall, params: ExternalParams) -> ActionResult:
        if self._registry is None or self._locks is None:
            raise RuntimeError("tools: mcp agents need ExternalDriver(registry, locks)")
        # mcp is heavy to import: only for agents that are served tools.
        from agents.actions.undo_sequence import undo_of
        from agents.drivers.mcp_tools import serve_step_tools

        async with serve_step_tools(
            self._registry, self._locks, call.events, call.context, params.can
        ) as served:
            extra = {**served.env(), MCP_CONFIG_ENV: str(served.config)}
            result = await run_external(
                call.context, params, extra_env=extra, extra_secrets=[served.token]
            )
        return dataclasses.replace(
            result,
            evidence=(*result.evidence, *served.session.evidence),
            undo=undo_of(served.session.undo),
        )

    def __repr__(self) -> str:
        return "ExternalDriver()"


def agent_env(ctx: ActionContext, driver: DriverSpec) -> dict[str, str]:
    """The agent's complete environment: the step's ``ORCH_`` identity variables, the names
    in ``driver.pass_env`` taken from ``ctx.env`` (the daemon's allowed environment; a name
    it lacks is left out), then ``driver.env``. Never anything from ``os.environ``."""
    env = {
        name: value
        for name, value in ctx.env.items()
        if name in _STEP_VARIABLES or name.startswith("ORCH_FENCE_")
    }
    env.update({name: ctx.env[name] for name in driver.pass_env if name in ctx.env})
    env.update(driver.env)
    return env


async def run_external(
    ctx: ActionContext,
    params: ExternalParams,
    *,
    extra_env: Mapping[str, str] | None = None,
    extra_secrets: Sequence[str] = (),
) -> ActionResult:
    """Run one step through the agent's process; see the module docstring. ``extra_env``
    (the tool server's variables) is added to :func:`agent_env`'s environment;
    ``extra_secrets`` (its token) are scrubbed from what the agent says, like the values of
    its secret-named variables.

    Returns a failed result for every agent misbehaviour; lets cancellation through after
    stopping the process group.
    """
    driver = params.driver
    cwd = Path(await anyio.Path(ctx.workdir / (driver.cwd or ".")).resolve())
    env = {**agent_env(ctx, driver), **(extra_env or {})}
    scrub = _Scrubber(sorted({*_secret_values(env), *extra_secrets}, key=len, reverse=True))
    program = driver.command[0]
    if not await anyio.Path(cwd).is_dir():
        return ActionResult(
            ok=False,
            summary=f"agent working directory {str(cwd)!r} does not exist: create it or fix "
            "the driver's `cwd`",
            details={"argv": driver.command, "cwd": str(cwd)},
        )
    deadline_s = _remaining_s(params.deadline_s)
    payload = _request(ctx, params, cwd, deadline_s).model_dump_json(by_alias=True) + "\n"
    answer = _AnswerBuffer(driver.answer_limit)
    stderr = BoundedCapture(_STDERR_LIMIT)
    try:
        step = await open_step_process(driver.command, env=env, cwd=cwd, stdin=subprocess.PIPE)
    except OSError as exc:
        return ActionResult(
            ok=False,
            summary=f"could not start agent {program!r}: {exc.strerror or exc}",
            details={"argv": driver.command, "cwd": str(cwd)},
        )
    process = step.process
    # The step runner's timeout is the deadline; a caller without one gets ``deadline_s``.
    own_limit_s = None if math.isfinite(anyio.current_effective_deadline()) else deadline_s
    with anyio.move_on_after(own_limit_s) as own_deadline:
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_send, process.stdin, payload.encode())
                tg.start_soon(_drain, process.stderr, stderr)
                tg.start_soon(_read_answer, process.stdout, answer, process.pid)
                await process.wait()
                # A child the agent left running would hold the pipes open for ever: the
                # agent's whole tree (its group and setsid descendants) ends with it; one
                # that shed its token too gets the grace period to let go of the pipes.
                await end_step_process(step)
                tg.cancel_scope.deadline = anyio.current_time() + driver.kill_grace
        finally:
            await stop_process_group(process, driver.kill_grace)
            await end_step_process(step)
            with anyio.CancelScope(shield=True):
                await process.aclose()
    if own_deadline.cancelled_caught:
        return ActionResult(
            ok=False,
            summary=f"agent {program!r} did not answer within {own_limit_s:g}s; stopped with "
            f"SIGTERM (SIGKILL after {driver.kill_grace:g}s)",
            details={"argv": driver.command, "cwd": str(cwd)},
        )
    return _result(ctx, driver, process.returncode, answer, stderr, scrub, cwd)


def _remaining_s(deadline_s: float | None) -> float | None:
    """The step's time left: ``deadline_s``, or less when an enclosing scope ends sooner."""
    effective = anyio.current_effective_deadline()
    if math.isfinite(effective):
        left = max(effective - anyio.current_time(), 0.0)
        return left if deadline_s is None else min(deadline_s, left)
    return deadline_s


def _request(
    ctx: ActionContext, params: ExternalParams, cwd: Path, deadline_s: float | None
) -> AgentRequest:
    deadline = None
    if deadline_s is not None:
        deadline = datetime.now(UTC) + timedelta(seconds=deadline_s)
        deadline = deadline.replace(microsecond=deadline.microsecond // 1000 * 1000)
    return AgentRequest(
        run_id=ctx.run_id,
        plan=params.plan,
        stream=ctx.stream,
        step=ctx.step,
        title=params.title,
        agent=ctx.agent,
        attempt=ctx.attempt,
        instruction=params.instruction,
        action=params.action,
        with_=params.with_,
        package=PackageInfo(
            markdown=params.package_markdown,
            tokens=params.package_tokens,
            token_limit=params.package_token_limit,
            sha256=params.package_sha256,
        ),
        fences=dict(ctx.fences),
        cwd=str(cwd),
        deadline=deadline,
        deadline_s=None if deadline_s is None else round(deadline_s, 3),
        answer_limit=params.driver.answer_limit,
    )


# -- the process's three pipes ----------------------------------------------------------------


class _AnswerBuffer:
    """stdout up to ``limit`` bytes (the answer), a bounded excerpt and a hash of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.excerpt = BoundedCapture(_OUTPUT_LIMIT)
        self.overflowed = False


async def _send(stream: ByteSendStream | None, payload: bytes) -> None:
    """Write the request and close stdin; an agent that does not read it is its business."""
    if stream is None:
        return
    # An agent that closed stdin or exited early is judged by its answer and exit code.
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError):
        await stream.send(payload)
    with suppress(anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError):
        await stream.aclose()


async def _drain(stream: ByteReceiveStream | None, capture: BoundedCapture) -> None:
    if stream is None:
        return
    async for chunk in stream:
        capture.feed(chunk)


async def _read_answer(stream: ByteReceiveStream | None, answer: _AnswerBuffer, pid: int) -> None:
    """Read stdout until EOF; past ``answer.limit`` bytes, kill the group and stop reading
    (so memory stays bounded by the limit plus one chunk)."""
    if stream is None:
        return
    async for chunk in stream:
        answer.excerpt.feed(chunk)
        if len(answer.data) + len(chunk) > answer.limit:
            answer.overflowed = True
            _kill_group(pid)
            return
        answer.data += chunk


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# -- judging the answer ---------------------------------------------------------------------


def _result(
    ctx: ActionContext,
    driver: DriverSpec,
    code: int | None,
    answer: _AnswerBuffer,
    stderr: BoundedCapture,
    scrub: _Scrubber,
    cwd: Path,
) -> ActionResult:
    err = scrub(stderr.text())
    output = scrub(answer.excerpt.text()) + (f"\n[stderr]\n{err}" if err else "")
    common: dict[str, Any] = {
        "exit_code": code,
        "output": output,
        "output_sha256": answer.excerpt.sha256,
        "output_bytes": answer.excerpt.total + stderr.total,
    }
    details: dict[str, Any] = {"argv": driver.command, "cwd": str(cwd)}
    program = driver.command[0]

    def failed(reason: str) -> ActionResult:
        return ActionResult(
            ok=False, summary=f"agent {program!r} {reason}", details=details, **common
        )

    if answer.overflowed:
        return failed(f"answer larger than {answer.limit} bytes; process group killed")
    if code is None or code != 0:
        return failed(_exit_reason(code, err))
    if not answer.data.strip():
        return failed("exited 0 without an answer on stdout")
    try:
        parsed = AgentAnswer.model_validate_json(bytes(answer.data))
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            return failed(f"answered something that is not JSON: {_head(answer.data, scrub)}")
        return failed(f"answer does not follow the protocol: {scrub(describe_errors(exc))}")
    return _from_answer(ctx, parsed, answer, scrub, details, common)


def _from_answer(
    ctx: ActionContext,
    parsed: AgentAnswer,
    answer: _AnswerBuffer,
    scrub: _Scrubber,
    details: dict[str, Any],
    common: dict[str, Any],
) -> ActionResult:
    source = f"agent:{ctx.agent}"
    digest = hashlib.sha256(answer.data).hexdigest()
    at = utc_timestamp()
    evidence = tuple(
        Evidence(
            check=scrub(claim.check),
            source="agent",
            detail={"agent": ctx.agent, "claimed": True},
            excerpt=scrub(claim.excerpt or ""),
            sha256=digest,
            metrics=dict(claim.metrics or {}),
            verified=False,
            at=at,
            id=claim.id,
        )
        for claim in parsed.evidence
    )
    details["evidence"] = [
        {
            "id": e.id,
            "check": e.check,
            "excerpt": e.excerpt,
            "metrics": dict(e.metrics),
            "verified": False,
            "source": source,
        }
        for e in evidence
    ]
    details["claimed_metrics"] = sorted(parsed.metrics)
    details["answer_sha256"] = digest
    summary = scrub(" ".join(parsed.summary.split()))
    ok = parsed.status == "succeeded"
    return ActionResult(
        ok=ok,
        summary=summary if ok else f"agent reported failure: {summary}",
        metrics=dict(parsed.metrics),
        evidence=evidence,
        details=details,
        **common,
    )


def _exit_reason(code: int | None, err: str) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        reason = f"was killed by {name}"
    else:
        reason = f"exited {code}"
    lines = err.strip().splitlines()
    if lines:
        reason += f": {lines[-1].strip()[:200]}"
    return reason


def _head(data: bytearray, scrub: _Scrubber) -> str:
    """The answer's first bytes, printable: control characters become escapes."""
    text = bytes(data[:_GARBAGE_HEAD]).decode("utf-8", "replace")
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    suffix = "..." if len(data) > _GARBAGE_HEAD else ""
    return repr(scrub(shown) + suffix)


# -- secrets --------------------------------------------------------------------------------


def _secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of the agent's secret-named variables (``OPENAI_API_KEY``, ``DB_PASSWORD``):
    they must not come back into summaries, events or logs through the agent's output."""
    return sorted(set(env_secrets(env)), key=len, reverse=True)


class _Scrubber:
    """Replaces the given secret values with ``***`` in text that came from the agent."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = secrets

    def __call__(self, text: str) -> str:
        return scrub_secrets(text, self._secrets)
