"""``docker.recreate``: re-create a container with a changed command, environment or GPU
device requests, keeping the exact original spec for its undo."""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.actions._docker_engine import (
    _DockerParams,
    _Engine,
    _engine,
    _inspect,
    _ready,
    _result,
    _state,
    _state_metrics,
    _wait_ready,
)
from agents.actions._masking import container_secrets
from agents.base import ActionContext, ActionResult, UndoRecord
from foundation.errors import ActionFailed
from streams.durations import Duration


class DeviceRequest(BaseModel):
    """A device request, as ``--gpus``/compose's ``deploy.resources.reservations.devices``
    write it: ``{driver: nvidia, count: -1, capabilities: [[gpu]]}`` asks for every GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str = ""
    count: int = Field(default=0, ge=-1, description="-1: all devices.")
    device_ids: list[str] = Field(default_factory=list)
    capabilities: list[list[str]] = Field(default_factory=list)
    options: dict[str, str] = Field(default_factory=dict)

    def api(self) -> dict[str, Any]:
        return {
            "Driver": self.driver,
            "Count": self.count,
            "DeviceIDs": self.device_ids or None,
            "Capabilities": self.capabilities or None,
            "Options": self.options or None,
        }


class DockerRecreateParams(_DockerParams):
    """``docker.recreate``: stop the container, create it again with the changes and start
    it (if it was running), wait until running and healthy, then remove the old one. Changes:
    ``command`` (the whole argv), ``command_flags`` (``--flag: value`` set, replacing the
    value of a flag already there; ``null`` removes flag and value), ``env`` (set; ``null``
    removes), ``device_requests`` (replace; ``[]`` removes). ``spec`` instead replaces the
    whole configuration with one an earlier recreate recorded (this is how undo works).
    If the new container does not come up, the original is put back as it was."""

    command: list[str] | None = None
    command_flags: dict[str, str | None] = Field(default_factory=dict)
    env: dict[str, str | None] = Field(default_factory=dict)
    device_requests: list[DeviceRequest] | None = None
    spec: dict[str, Any] | None = None
    stop_timeout_s: Duration = Field(default=10.0, ge=0)
    ready_timeout_s: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> DockerRecreateParams:
        changes = (
            self.command is not None
            or self.command_flags
            or self.env
            or self.device_requests is not None
        )
        if self.spec is not None and changes:
            raise ValueError("give either spec (a recorded configuration) or changes, not both")
        if self.spec is None and not changes:
            raise ValueError(
                "nothing to change: give command, command_flags, env or device_requests"
            )
        if self.spec is not None and not {"config", "host_config"} <= set(self.spec):
            raise ValueError("spec must be one recorded by docker.recreate (config, host_config)")
        return self


def _spec_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """Everything needed to create the container again as it is: name, config, host
    config, networks (with their aliases, less the one named after the old id)."""
    short_id = str(info.get("Id", ""))[:12]
    networks: dict[str, Any] = {}
    for name, endpoint in ((info.get("NetworkSettings") or {}).get("Networks") or {}).items():
        aliases = [a for a in endpoint.get("Aliases") or () if a != short_id]
        networks[name] = {
            "IPAMConfig": endpoint.get("IPAMConfig"),
            "Links": endpoint.get("Links"),
            "Aliases": aliases or None,
            "DriverOpts": endpoint.get("DriverOpts"),
        }
    return {
        "name": str(info["Name"]).lstrip("/"),
        "image_id": info.get("Image"),
        "config": copy.deepcopy(info["Config"]),
        "host_config": copy.deepcopy(info["HostConfig"]),
        "networks": networks,
    }


def _set_flags(argv: list[str], flags: Mapping[str, str | None]) -> list[str]:
    out = list(argv)
    for flag, value in flags.items():
        if flag in out:
            at = out.index(flag)
            has_value = at + 1 < len(out) and not out[at + 1].startswith("--")
            del out[at : at + (2 if has_value else 1)]
            if value is not None:
                out[at:at] = [flag, value]
        elif value is not None:
            out += [flag, value]
    return out


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _from_env(value: str, env: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by the step environment's NAME: how a plan hands a secret (a new
    Redis password) to a container without writing it down. A missing name is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise ActionFailed(
                "docker.recreate",
                f"${{{name}}} is not in the step's "
                f"environment (fix: set {name} and add it to ORCH_PASS_ENV)",
            )
        return env[name]

    return _REFERENCE.sub(one, value)


def _changed(
    params: DockerRecreateParams, old: Mapping[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    if params.spec is not None:
        return copy.deepcopy(params.spec)
    new = copy.deepcopy(dict(old))
    config, host = new["config"], new["host_config"]
    if params.command is not None:
        config["Cmd"] = [_from_env(arg, env) for arg in params.command]
    if params.command_flags:
        flags = {
            k: (_from_env(v, env) if v is not None else None)
            for k, v in params.command_flags.items()
        }
        config["Cmd"] = _set_flags(list(config.get("Cmd") or ()), flags)
    if params.env:
        env_now = dict(str(e).partition("=")[::2] for e in config.get("Env") or ())
        for name, value in params.env.items():
            if value is None:
                env_now.pop(name, None)
            else:
                env_now[name] = _from_env(value, env)
        config["Env"] = [f"{k}={v}" for k, v in env_now.items()]
    if params.device_requests is not None:
        host["DeviceRequests"] = [d.api() for d in params.device_requests] or None
    return new


def _create(engine: _Engine, spec: Mapping[str, Any], volumes: Sequence[str]) -> str:
    """Create the container of ``spec`` (blocking; run it in a thread); return its id."""
    config = copy.deepcopy(dict(spec["config"]))
    host = copy.deepcopy(dict(spec["host_config"]))
    if volumes:  # the old container's anonymous volumes keep their data
        host["Binds"] = [*(host.get("Binds") or ()), *volumes]
    networks = dict(spec.get("networks") or {})
    mode = str(host.get("NetworkMode") or "")
    first = mode if mode in networks else next(iter(networks), None)
    if first is not None:
        config["NetworkingConfig"] = {"EndpointsConfig": {first: networks.pop(first)}}
    image_id = spec.get("image_id")
    if image_id and engine.api.inspect_image(config["Image"]).get("Id") != image_id:
        config["Image"] = image_id  # the tag moved: keep the exact image
    config["HostConfig"] = host
    created = engine.api.create_container_from_config(config, name=spec["name"])
    for name, endpoint in networks.items():
        engine.api.connect_container_to_network(
            created["Id"], name, aliases=endpoint.get("Aliases"), links=endpoint.get("Links")
        )
    return str(created["Id"])


async def run_recreate(ctx: ActionContext, params: DockerRecreateParams) -> ActionResult:
    """Re-create the container with the changes; its UndoRecord re-creates the original."""
    extra = params.stop_timeout_s + params.ready_timeout_s
    async with _engine(ctx, params, "docker.recreate", extra) as engine:
        info = await _inspect(engine, params.container)
        old = _spec_of(info)
        new = _changed(params, old, ctx.env)
        name, old_id = old["name"], info["Id"]
        was_running = bool(info["State"]["Running"])
        engine.secrets[:] = [*engine.secrets, *container_secrets(new["config"])]
        volumes = [
            f"{m['Name']}:{m['Destination']}"
            for m in info.get("Mounts") or ()
            if m.get("Type") == "volume" and len(str(m.get("Name"))) == 64
        ]
        parked = f"{name}-orch-replaced-{old_id[:8]}"
        began = time.monotonic()
        api = engine.api
        stop = math.ceil(params.stop_timeout_s)
        await engine.call(f"stop {name!r}", lambda: api.stop(old_id, timeout=stop), extra)
        await engine.call(f"rename {name!r}", lambda: api.rename(old_id, parked))
        new_id: str | None = None
        try:
            new_id = await engine.call(f"create {name!r}", lambda: _create(engine, new, volumes))
            if was_running:
                await engine.call(f"start {name!r}", lambda: api.start(new_id))
                after = await _wait_ready(engine, new_id, params.ready_timeout_s)
                if not _ready(after):
                    raise engine.failed(
                        f"the new {name!r} did not become ready within "
                        f"{params.ready_timeout_s:g}s: {_state(after)['status']}"
                        f"/{_state(after)['health']}"
                    )
            else:
                after = await engine.call(
                    f"inspect {name!r}", lambda: api.inspect_container(new_id)
                )
        except BaseException as exc:
            # Put the original back as it was, even when cancelled: remove what we made.
            back = "is back"
            with anyio.move_on_after(engine.timeout_s + extra, shield=True):
                try:
                    await _put_back(
                        engine, new_id, old_id, name, was_running, params.ready_timeout_s
                    )
                except ActionFailed as failed:
                    back = f"could not be put back ({failed.reason}): it is {parked!r}, stopped"
            if isinstance(exc, ActionFailed):
                return ActionResult(
                    ok=False,
                    summary=f"{exc.reason}; the original {name!r} {back}",
                    details={"before": _state(info)},
                )
            raise
        await engine.call(f"remove the old {name!r}", lambda: api.remove_container(old_id))
        took = time.monotonic() - began
    before, now = _state(info), _state(after)
    changed = sorted(
        [
            f"Config.{k}"
            for k in set(old["config"]) | set(new["config"])
            if old["config"].get(k) != new["config"].get(k)
        ]
        + [
            f"HostConfig.{k}"
            for k in set(old["host_config"]) | set(new["host_config"])
            if old["host_config"].get(k) != new["host_config"].get(k)
        ]
    )
    metrics = _state_metrics(params.prefix(), now)
    metrics[f"{params.prefix()}.recreate_s"] = round(took, 3)
    detail = {"before": before, "after": now, "changed": changed}
    undo_params: dict[str, Any] = {
        "container": name,
        "spec": old,
        "stop_timeout_s": params.stop_timeout_s,
        "ready_timeout_s": params.ready_timeout_s,
    }
    if params.base_url:
        undo_params["base_url"] = params.base_url
    undo = UndoRecord(
        "docker.recreate", undo_params, f"re-create {name} with its previous configuration"
    )
    summary = f"re-created {name} in {took:.1f}s ({', '.join(changed) or 'no change'}): " + (
        now["status"] + (f", {now['health']}" if now["health"] else "")
    )
    return _result(True, summary, f"docker recreate {name}", detail, metrics, undo=undo)


async def _put_back(
    engine: _Engine, new_id: str | None, old_id: str, name: str, start: bool, ready_s: float
) -> None:
    api = engine.api
    if new_id is not None:
        await engine.call(
            f"remove the new {name!r}", lambda: api.remove_container(new_id, force=True)
        )
    await engine.call(f"rename back {name!r}", lambda: api.rename(old_id, name))
    if start:
        await engine.call(f"start the original {name!r}", lambda: api.start(old_id))
        await _wait_ready(engine, old_id, ready_s)
