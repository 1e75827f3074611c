"""``command``: run a program from an argv list, with no shell unless the plan asks for one.

The process gets exactly the environment the step's context carries plus the action's own
``env`` (nothing else of the daemon's) and ``ORCH_STEP_TOKEN``, runs in its own session so
the whole process group can be stopped, and has stdout and stderr captured up to a bound: the
head and tail are kept, the rest is counted and hashed. On timeout or cancellation the group
gets SIGTERM, then SIGKILL after the context's grace period. Children a command leaves
running in the background are ended when it exits, those that left its group with ``setsid``
too (found by their token). If the daemon dies or, under a Redis lease, stops renewing it,
the watchdog of :mod:`agents.processes.containment` ends the whole tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from contextlib import suppress

import anyio
from anyio.abc import ByteReceiveStream, Process
from pydantic import BaseModel, ConfigDict, Field

from agents.base import ActionContext, ActionResult, Evidence
from agents.processes.containment import end_step_process, open_step_process
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.secrets import env_secrets, mask_command, scrub, strip_controls

__all__ = [
    "BoundedCapture",
    "CommandParams",
    "parse_metric_lines",
    "register",
    "run_command",
    "stop_process_group",
]


class CommandParams(BaseModel):
    """Parameters of ``command``: ``argv`` (no shell: write ``[sh, -c, "..."]`` for one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict, description="Added to the environment.")
    cwd: str | None = Field(default=None, description="Relative to the run's working dir.")
    stdin: str | None = None
    ok_exit_codes: list[int] = Field(default_factory=lambda: [0])
    output_limit: int = Field(default=64 * 1024, ge=256, description="Bytes kept per stream.")
    parse_metrics: bool = Field(
        default=False,
        description="Read lines like `db.response_ms.p50=84` (or `: 84`) on stdout as metrics.",
    )


class BoundedCapture:
    """Keeps the first and last ``limit/2`` bytes of a stream, counts and hashes all of it."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self._hash = hashlib.sha256()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._hash.update(chunk)
        room = self._half - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > self._half:
                del self._tail[: len(self._tail) - self._half]

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def text(self) -> str:
        head = self._head.decode("utf-8", "replace")
        if self.total <= len(self._head) + len(self._tail):
            return head + self._tail.decode("utf-8", "replace")
        skipped = self.total - len(self._head) - len(self._tail)
        return f"{head}\n[... {skipped} bytes not kept ...]\n" + self._tail.decode(
            "utf-8", "replace"
        )


_EXCERPT = 2048
_METRIC_LINE = re.compile(
    r"^\s*([A-Za-z_][\w.\-]*)\s*[=:]\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$"
)


def parse_metric_lines(text: str) -> dict[str, float | str]:
    """Metrics from lines ``name=number`` or ``name: number`` (the last value wins)."""
    found: dict[str, float | str] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


async def _drain(stream: ByteReceiveStream | None, capture: BoundedCapture) -> None:
    if stream is None:
        return
    async for chunk in stream:
        capture.feed(chunk)


async def stop_process_group(process: Process, grace_s: float) -> None:
    """SIGTERM the process's group, wait ``grace_s``, then SIGKILL it. Never raises."""
    if process.returncode is not None:
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace_s, shield=True):
        await process.wait()
    if process.returncode is None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with anyio.move_on_after(grace_s, shield=True):
            await process.wait()


async def run_command(ctx: ActionContext, params: CommandParams) -> ActionResult:
    """Run ``params.argv``; ok when its exit code is one of ``ok_exit_codes``."""
    env = {**ctx.env, **params.env}
    cwd = ctx.workdir / params.cwd if params.cwd else ctx.workdir
    stdout, stderr = BoundedCapture(params.output_limit), BoundedCapture(params.output_limit)
    try:
        step = await open_step_process(
            params.argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE if params.stdin is not None else None,
        )
    except OSError as exc:
        return ActionResult(
            ok=False,
            summary=f"could not start {params.argv[0]!r}: {exc.strerror or exc}",
            details={"argv": params.argv},
        )
    process = step.process
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_drain, process.stdout, stdout)
            tg.start_soon(_drain, process.stderr, stderr)
            if params.stdin is not None and process.stdin is not None:
                await process.stdin.send(params.stdin.encode())
                await process.stdin.aclose()
            await process.wait()
            # A child left running in the background would hold the pipes open for ever:
            # a command's whole tree (group and setsid descendants) ends with it.
            await end_step_process(step)
    finally:
        await stop_process_group(process, ctx.kill_grace_s)
        await end_step_process(step)
        with anyio.CancelScope(shield=True):
            await process.aclose()
    code = process.returncode
    ok = code in params.ok_exit_codes
    # What the command printed is quoted only with the environment's secret values masked.
    secrets = env_secrets(env)
    output = scrub(stdout.text(), secrets)
    err = scrub(stderr.text(), secrets)
    argv = mask_command(params.argv, secrets)
    summary = f"{argv[0]} exited {code}"
    shown_err = strip_controls(err).strip()
    if not ok and shown_err:
        summary += f": {shown_err.splitlines()[-1][:200]}"
    digest = hashlib.sha256(f"{stdout.sha256}:{stderr.sha256}".encode()).hexdigest()
    metrics: dict[str, float | str] = (
        parse_metric_lines(stdout.text()) if params.parse_metrics else {}
    )
    metrics["exit_code"] = float(code) if code is not None else -1.0
    evidence = Evidence(
        check=" ".join(argv)[:200],
        source="command",
        detail={"argv": argv, "exit_code": code, "cwd": str(cwd)},
        excerpt=output[-_EXCERPT:],
        sha256=stdout.sha256,
        metrics=dict(metrics),
        verified=True,
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=ok,
        summary=summary,
        exit_code=code,
        output=output + (f"\n[stderr]\n{err}" if err else ""),
        output_sha256=digest,
        output_bytes=stdout.total + stderr.total,
        metrics=metrics,
        evidence=(evidence,),
        details={
            "argv": argv,
            "stdout_sha256": stdout.sha256,
            "stderr_sha256": stderr.sha256,
        },
    )


def register(registry: ActionRegistry) -> None:
    """Add ``command`` to ``registry``."""
    registry.register("command", CommandParams, "run a program (argv, no shell)")(run_command)
