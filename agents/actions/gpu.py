"""``gpu.sample``: read GPU utilisation, memory and temperature every ``interval`` over a
``window``, through NVML, and report them as metrics and nvidia-smi-like evidence.

Which GPUs: the ``devices`` parameter (NVML indices), else the step's own
``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-`` UUIDs, as the scheduler's GPU allocator sets
it; indices are taken in NVML's order, which is CUDA's with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``),
else all. Metrics (``gpu.N`` uses NVML's index N)::

    gpu.count, gpu.samples
    gpu.utilization_pct           mean over the window and the GPUs; .max: highest reading
    gpu.memory_utilization_pct    memory in use / total (nvidia-smi's Memory-Usage)
    gpu.memory_busy_pct           time memory was read or written (NVML's memory rate)
    gpu.temperature_c
    gpu.N.utilization_pct ...     the same per GPU (mean, and .max)

A metric a GPU does not report (utilisation in MIG mode, say) is left out.

With no driver or no GPU the action collects the evidence ``no GPU: <reason>`` (source
``nvml``, verified) and the metric ``gpu.count = 0``, and fails, unless ``on_no_gpu: skip``:
then it succeeds with the summary ``skipped: no GPU: <reason>`` and ``details["skipped"]``
True (``details["skipped"]`` is False on every other result). A gate on GPU metrics is
then not measured, so it is not met.

The probe is a seam at the :class:`~agents.gpus.GpuProbe` Protocol:
``register(registry, probe_factory=...)`` decides where readings come from (NVML by default;
a fake in tests). Each run of the action opens one probe and closes it at the end.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agents.actions.command import BoundedCapture
from agents.base import ActionContext, ActionResult, Evidence
from agents.gpus import GpuProbe, GpuSample, GpuUnavailable, NvmlProbe
from agents.registry import ActionRegistry
from foundation.clock import utc_timestamp
from streams.durations import Duration

__all__ = [
    "GpuSampleParams",
    "ProbeFactory",
    "no_gpu_result",
    "register",
    "sample_gpus",
    "summarize",
]

ProbeFactory = Callable[[], GpuProbe]

_MAX_SAMPLES = 10_000
_EXCERPT = 2048
_OUTPUT_LIMIT = 64 * 1024
_MIB = 1024 * 1024


class GpuSampleParams(BaseModel):
    """Parameters of ``gpu.sample``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window: Duration = Field(default=5.0, description="How long to sample (0: once).")
    interval: Duration = Field(default=1.0, description="Time between readings (> 0).")
    devices: list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None,
        min_length=1,
        description="GPU indices (NVML numbering); default: the step's CUDA_VISIBLE_DEVICES, "
        "else every GPU.",
    )
    on_no_gpu: Literal["fail", "skip"] = Field(
        default="fail", description="With no NVIDIA driver or GPU: fail the step, or skip it."
    )

    @model_validator(mode="after")
    def _readings(self) -> GpuSampleParams:
        if self.interval <= 0:
            raise ValueError("interval must be above zero, e.g. 1s or 250ms")
        if self.window / self.interval > _MAX_SAMPLES:
            raise ValueError(
                f"window / interval gives more than {_MAX_SAMPLES} readings; "
                "lengthen the interval or shorten the window"
            )
        return self

    @property
    def readings(self) -> int:
        """How many readings: at 0, interval, 2 x interval... up to the window's end."""
        return math.floor(self.window / self.interval + 1e-9) + 1


class _NoGpu(Exception):
    """Control flow: this step can see no GPU, for ``reason``."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class _Unusable(Exception):
    """Control flow: the step names GPUs the machine does not have."""


def register(registry: ActionRegistry, *, probe_factory: ProbeFactory = NvmlProbe) -> None:
    """Add ``gpu.sample`` to ``registry``, reading GPUs through ``probe_factory()``."""

    async def run_gpu_sample(ctx: ActionContext, params: GpuSampleParams) -> ActionResult:
        probe = probe_factory()
        try:
            return await sample_gpus(ctx, params, probe)
        finally:
            await probe.aclose()

    registry.register(
        "gpu.sample", GpuSampleParams, "sample GPU utilisation, memory and temperature (NVML)"
    )(run_gpu_sample)


async def sample_gpus(ctx: ActionContext, params: GpuSampleParams, probe: GpuProbe) -> ActionResult:
    """Take ``params.readings`` readings of the step's GPUs from ``probe`` (see module doc)."""
    readings: list[tuple[float, tuple[GpuSample, ...]]] = []
    chosen: tuple[int, ...] = ()
    start = anyio.current_time()
    try:
        for k in range(params.readings):
            await anyio.sleep_until(start + k * params.interval)
            asked_at = anyio.current_time() - start
            devices = await probe.devices()
            if not readings:
                chosen = _select(ctx, params, devices)
            by_index = {d.index: d for d in devices}
            missing = [i for i in chosen if i not in by_index]
            if missing:
                raise GpuUnavailable(f"GPU {missing[0]} disappeared during the window")
            readings.append((asked_at, tuple(by_index[i] for i in chosen)))
    except _NoGpu as exc:
        return _no_gpu(params, exc.reason, exc.fix)
    except _Unusable as exc:
        return ActionResult(ok=False, summary=str(exc), details={"skipped": False})
    except GpuUnavailable as exc:
        if not readings:
            return _no_gpu(params, exc.reason, exc.fix)
        return ActionResult(
            ok=False,
            summary=f"GPU readings stopped after {len(readings)}: {exc.reason}",
            details={"skipped": False, "reason": exc.reason},
        )
    return _measured(params, readings)


def _select(
    ctx: ActionContext, params: GpuSampleParams, devices: Sequence[GpuSample]
) -> tuple[int, ...]:
    """Indices of the GPUs to read, in the order asked for."""
    if not devices:
        raise _NoGpu("the NVIDIA driver sees no GPU", "check nvidia-smi")
    present = ", ".join(f"{d.index} ({d.uuid})" for d in devices)
    if params.devices is not None:
        indices = {d.index for d in devices}
        absent = [i for i in params.devices if i not in indices]
        if absent:
            raise _Unusable(f"devices: GPU {absent[0]} is not present; this machine has {present}")
        return tuple(dict.fromkeys(params.devices))
    visible = ctx.env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return tuple(d.index for d in devices)
    chosen: list[int] = []
    for token in (t.strip() for t in visible.split(",")):
        if token.isdigit():
            match = [d for d in devices if d.index == int(token)]
        elif token.startswith("GPU-"):  # CUDA accepts a unique prefix of the UUID
            match = [d for d in devices if d.uuid.startswith(token)]
        elif token.startswith("MIG-"):
            raise _Unusable(
                f"CUDA_VISIBLE_DEVICES={visible!r} names a MIG instance, which gpu.sample "
                "cannot read; name the parent GPU's index in devices:"
            )
        else:
            break  # CUDA ignores this entry and every one after it ("-1", "", "NoDevFiles")
        if len(match) != 1:
            raise _Unusable(
                f"CUDA_VISIBLE_DEVICES={visible!r}: {token!r} names no single GPU; "
                f"this machine has {present}"
            )
        chosen.append(match[0].index)
    if not chosen:
        raise _NoGpu(
            f"CUDA_VISIBLE_DEVICES={visible!r} shows this step no GPU",
            "give the step gpus: 1 in the plan, or name the GPUs in devices:",
        )
    return tuple(dict.fromkeys(chosen))


def _no_gpu(params: GpuSampleParams, reason: str, fix: str) -> ActionResult:
    return no_gpu_result(reason, fix, skip=params.on_no_gpu == "skip")


def no_gpu_result(reason: str, fix: str = "", *, skip: bool) -> ActionResult:
    """What a step that needs a GPU reports where there is none: the evidence
    ``no GPU: <reason>`` and ``gpu.count = 0``; ok (skipped) only with ``skip``.
    The step runner uses it too, for a step with ``gpus:`` on a machine without any."""
    text = f"no GPU: {reason}"
    output = text + (f" (fix: {fix})" if fix else "")
    digest = hashlib.sha256(output.encode()).hexdigest()
    metrics: dict[str, float | str] = {"gpu.count": 0.0}
    evidence = Evidence(
        check=text,
        source="nvml",
        detail={"reason": reason, "fix": fix, "on_no_gpu": "skip" if skip else "fail"},
        excerpt=output[:_EXCERPT],
        sha256=digest,
        metrics=dict(metrics),
        verified=True,
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=skip,
        summary=f"skipped: {text}" if skip else text,
        output=output,
        output_sha256=digest,
        output_bytes=len(output.encode()),
        metrics=metrics,
        evidence=(evidence,),
        details={"skipped": skip, "reason": reason},
    )


def summarize(readings: Sequence[Sequence[GpuSample]]) -> dict[str, float | str]:
    """The metrics of the module doc over ``readings`` (each a reading of the same GPUs)."""
    gpus = [s.index for s in readings[0]] if readings else []
    metrics: dict[str, float | str] = {
        "gpu.count": float(len(gpus)),
        "gpu.samples": float(len(readings)),
    }
    fields: dict[str, Callable[[GpuSample], float | None]] = {
        "utilization_pct": lambda s: s.utilization_pct,
        "memory_utilization_pct": lambda s: s.memory_utilization_pct,
        "memory_busy_pct": lambda s: s.memory_busy_pct,
        "temperature_c": lambda s: s.temperature_c,
    }
    for name, read in fields.items():
        every: list[float] = []
        for position, index in enumerate(gpus):
            values = [v for r in readings if (v := read(r[position])) is not None]
            _put(metrics, f"gpu.{index}.{name}", values)
            every += values
        _put(metrics, f"gpu.{name}", every)
    return metrics


def _put(metrics: dict[str, float | str], name: str, values: list[float]) -> None:
    if values:
        metrics[name] = round(sum(values) / len(values), 3)
        metrics[f"{name}.max"] = max(values)


def _measured(
    params: GpuSampleParams, readings: list[tuple[float, tuple[GpuSample, ...]]]
) -> ActionResult:
    metrics = summarize([r for _, r in readings])
    first = readings[0][1]
    last = readings[-1][1]
    span = f"{len(readings)} readings every {params.interval:g}s over {params.window:g}s"
    lines = [
        f"gpu.sample (NVML): {len(first)} GPU{'s' if len(first) != 1 else ''}, {span}",
        f"{'GPU':>3}  {'Name':<28} {'Util% avg':>9} {'max':>5}  {'Mem% avg':>8} {'max':>5}  "
        f"{'Memory-Usage (last)':>21}  {'Temp C':>6} {'max':>4}",
    ]
    for gpu, now in zip(first, last, strict=True):
        i = gpu.index
        lines.append(
            f"{i:>3}  {gpu.name[:28]:<28} {_cell(metrics, f'gpu.{i}.utilization_pct', 9)} "
            f"{_cell(metrics, f'gpu.{i}.utilization_pct.max', 5)}  "
            f"{_cell(metrics, f'gpu.{i}.memory_utilization_pct', 8)} "
            f"{_cell(metrics, f'gpu.{i}.memory_utilization_pct.max', 5)}  "
            f"{now.memory_used_bytes // _MIB:>8}MiB / {now.memory_total_bytes // _MIB:>6}MiB  "
            f"{_cell(metrics, f'gpu.{i}.temperature_c', 6)} "
            f"{_cell(metrics, f'gpu.{i}.temperature_c.max', 4)}"
        )
    lines.append(
        f"{'all':>3}  {'':<28} {_cell(metrics, 'gpu.utilization_pct', 9)} "
        f"{_cell(metrics, 'gpu.utilization_pct.max', 5)}  "
        f"{_cell(metrics, 'gpu.memory_utilization_pct', 8)} "
        f"{_cell(metrics, 'gpu.memory_utilization_pct.max', 5)}"
    )
    lines += [
        "",
        "t_s,gpu,uuid,utilization_pct,memory_used_mib,memory_total_mib,"
        "memory_busy_pct,temperature_c",
    ]
    for at, reading in readings:
        lines.extend(
            f"{at:.3f},{s.index},{s.uuid},{_num(s.utilization_pct)},"
            f"{s.memory_used_bytes // _MIB},{s.memory_total_bytes // _MIB},"
            f"{_num(s.memory_busy_pct)},{_num(s.temperature_c)}"
            for s in reading
        )
    capture = BoundedCapture(_OUTPUT_LIMIT)
    capture.feed("\n".join(lines).encode() + b"\n")
    text = capture.text()
    utilization = metrics.get("gpu.utilization_pct")
    summary = (
        f"sampled {len(first)} GPU{'s' if len(first) != 1 else ''} ({span}): "
        f"utilization {utilization if utilization is not None else 'n/a'}% avg "
        f"(max {metrics.get('gpu.utilization_pct.max', 'n/a')}%), "
        f"memory {metrics['gpu.memory_utilization_pct']}% in use"
    )
    evidence = Evidence(
        check=f"GPU utilization and memory over {params.window:g}s",
        source="nvml",
        detail={
            "devices": [{"index": s.index, "uuid": s.uuid, "name": s.name} for s in first],
            "window_s": params.window,
            "interval_s": params.interval,
            "readings": len(readings),
        },
        excerpt=text[:_EXCERPT],
        sha256=capture.sha256,
        metrics=dict(metrics),
        verified=True,
        at=utc_timestamp(),
    )
    return ActionResult(
        ok=True,
        summary=summary,
        output=text,
        output_sha256=capture.sha256,
        output_bytes=capture.total,
        metrics=metrics,
        evidence=(evidence,),
        details={"skipped": False, "devices": [s.index for s in first]},
    )


def _cell(metrics: dict[str, float | str], name: str, width: int) -> str:
    value = metrics.get(name)
    return f"{value:>{width}.1f}" if isinstance(value, float) else f"{'n/a':>{width}}"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
