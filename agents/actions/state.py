"""``state.*``: shared key/value state that parallel streams use to synchronise.

The values live in the coordinator: in this process by default, in Redis when several
daemons cooperate, so a key written by a step of one run can be read by a step of another.
Keys are scoped to the run unless ``scope: global``. Every write is a compare-and-set on
the key's version, so two writers never silently overwrite each other.

- ``state.put``: write a JSON value; with ``if_version`` only over that version (0: only if
  absent), else over whatever is there now (retried when another writer gets in between).
- ``state.get``: read a value; a number becomes the metric ``state.<key>``; with ``expect``
  the step fails unless the value equals it.
- ``state.wait``: wait until the key equals a value (or just exists), within ``timeout``.
  Shared state has no change notification, so this re-reads with backoff (50 ms doubling to
  1 s): a handshake between streams, not a hot path.
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agents.base import ActionContext, ActionResult, Evidence, SharedState
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from foundation.errors import ActionFailed
from streams.durations import Duration

__all__ = ["StateGetParams", "StatePutParams", "StateWaitParams", "register"]

_MISSING = object()


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-/]+$")
    scope: Literal["run", "global"] = "run"


class StatePutParams(_Params):
    value: JsonValue
    if_version: int | None = Field(default=None, ge=0)


class StateGetParams(_Params):
    expect: JsonValue = None
    require: bool = Field(default=False, description="Fail if the key was never written.")


class StateWaitParams(_Params):
    equals: JsonValue = None
    timeout: Duration = 300.0


def _store(ctx: ActionContext, action: str) -> SharedState:
    if ctx.state is None:
        raise ActionFailed(action, "no shared state here (this runner has no coordinator)")
    return ctx.state


def _full_key(ctx: ActionContext, params: _Params) -> str:
    return f"global/{params.key}" if params.scope == "global" else f"run/{ctx.run_id}/{params.key}"


def _evidence(check: str, key: str, value: Any, version: int) -> Evidence:
    return Evidence(
        check=check,
        source="state",
        detail={"key": key, "version": version},
        excerpt=repr(value)[:500],
        verified=True,
        at=utc_timestamp(),
    )


def _metrics(params: _Params, value: Any) -> dict[str, float | str]:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return {}
    return {f"state.{params.key}": value if isinstance(value, str) else float(value)}


async def run_put(ctx: ActionContext, params: StatePutParams) -> ActionResult:
    """Compare-and-set ``value`` under the key; fail on a version conflict."""
    state, key = _store(ctx, "state.put"), _full_key(ctx, params)
    while True:
        if params.if_version is not None:
            expected = params.if_version
        else:
            current = await state.state_get(key)
            expected = current.version if current is not None else 0
        version = await state.state_cas(key, params.value, expected_version=expected)
        if version is not None:
            return ActionResult(
                ok=True,
                summary=f"{params.key} = {params.value!r} (version {version})",
                metrics={**_metrics(params, params.value), f"state.{params.key}.version": version},
                evidence=(_evidence(f"wrote {params.key}", key, params.value, version),),
            )
        if params.if_version is not None:
            now = await state.state_get(key)
            found = now.version if now is not None else 0
            return ActionResult(
                ok=False,
                summary=f"{params.key} is at version {found}, not "
                f"{params.if_version}: another writer got there first",
            )


async def run_get(ctx: ActionContext, params: StateGetParams) -> ActionResult:
    """Read the key; check it against ``expect`` when given."""
    key = _full_key(ctx, params)
    current = await _store(ctx, "state.get").state_get(key)
    if current is None:
        ok = not params.require and params.expect is None
        return ActionResult(ok=ok, summary=f"{params.key} was never written")
    ok = params.expect is None or current.value == params.expect
    summary = f"{params.key} = {current.value!r} (version {current.version})"
    if not ok:
        summary += f", expected {params.expect!r}"
    return ActionResult(
        ok=ok,
        summary=summary,
        metrics=_metrics(params, current.value),
        evidence=(_evidence(f"read {params.key}", key, current.value, current.version),),
    )


async def run_wait(ctx: ActionContext, params: StateWaitParams) -> ActionResult:
    """Wait until the key equals ``equals`` (or exists, when ``equals`` is null)."""
    state, key = _store(ctx, "state.wait"), _full_key(ctx, params)
    delay = 0.05
    with anyio.move_on_after(params.timeout) as scope:
        while True:
            current = await state.state_get(key)
            if current is not None and (params.equals is None or current.value == params.equals):
                return ActionResult(
                    ok=True,
                    summary=f"{params.key} = {current.value!r}",
                    metrics=_metrics(params, current.value),
                    evidence=(
                        _evidence(f"waited for {params.key}", key, current.value, current.version),
                    ),
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)
    assert scope.cancelled_caught
    wanted = "to exist" if params.equals is None else f"to equal {params.equals!r}"
    return ActionResult(
        ok=False, summary=f"{params.key} did not come {wanted} within {params.timeout:g}s"
    )


def register(registry: ActionRegistry) -> None:
    registry.register("state.put", StatePutParams, "compare-and-set a shared value")(run_put)
    registry.register("state.get", StateGetParams, "read a shared value")(run_get)
    registry.register("state.wait", StateWaitParams, "wait for a shared value")(run_wait)
