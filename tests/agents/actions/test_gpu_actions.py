"""``gpu.sample``: on this machine's real NVML (no driver here: "no GPU" evidence), and over
a window of readings from a fake probe, injected at the GpuProbe Protocol through
``register(registry, probe_factory=...)``, on a virtual clock."""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Sequence
from pathlib import Path

import anyio
import pydantic
import pynvml  # noqa: F401  (see below)
import pytest

from agents.actions.gpu import GpuSampleParams, register, summarize
from agents.base import ActionContext, ActionResult
from agents.gpus import GpuSample, GpuUnavailable, cuda_env
from agents.registry import ActionRegistry
from streams.gates import parse_criterion
from tests.helpers import on_virtual_clock

# pynvml is imported above, at collection, though only NvmlProbe uses it: importing it
# allocates enough to start a garbage-collection cycle, which would report here whatever
# an earlier test leaked (a ResourceWarning) as this test's failure.

MIB = 1024 * 1024


def ctx(env: dict[str, str] | None = None) -> ActionContext:
    return ActionContext(
        run_id="r",
        stream="gpu-optimization",
        step="monitor",
        agent="monitoring-analyst",
        attempt=1,
        fences={},
        env=env or {},
        workdir=Path.cwd(),
    )


def gpu(index: int, util: float | None, mem_mib: int, temp: float | None = 50.0) -> GpuSample:
    return GpuSample(
        index=index,
        uuid=f"GPU-{index}abc-0000",
        name=f"Fake GPU {index}",
        utilization_pct=util,
        memory_used_bytes=mem_mib * MIB,
        memory_total_bytes=1000 * MIB,
        temperature_c=temp,
        memory_busy_pct=None if util is None else util / 2,
    )


class ScriptedProbe:
    """Answers each reading with the next of ``readings`` (the last one repeats), noting
    when it was asked; ``fail_at`` makes that reading raise GpuUnavailable."""

    def __init__(self, readings: Sequence[Sequence[GpuSample]], fail_at: int | None = None) -> None:
        self.readings = [tuple(r) for r in readings]
        self.fail_at = fail_at
        self.asked_at: list[float] = []
        self.closed = False

    async def devices(self) -> tuple[GpuSample, ...]:
        n = len(self.asked_at)
        self.asked_at.append(anyio.current_time())
        await anyio.sleep(0.01)  # a reading takes a little time
        if n == self.fail_at:
            raise GpuUnavailable("a GPU has fallen off the bus (NVML: GPU is lost)")
        return self.readings[min(n, len(self.readings) - 1)]

    async def aclose(self) -> None:
        self.closed = True


def registry_with(probe: ScriptedProbe) -> ActionRegistry:
    registry = ActionRegistry()
    register(registry, probe_factory=lambda: probe)
    return registry


def run(probe: ScriptedProbe, env: dict[str, str] | None = None, **params: object) -> ActionResult:
    registry = registry_with(probe)
    parsed = GpuSampleParams.model_validate(params)

    async def main() -> ActionResult:
        return await registry["gpu.sample"].run(ctx(env), parsed)

    return on_virtual_clock(main)


TWO_GPUS = [
    [gpu(0, 10.0, 100, 40.0), gpu(1, 50.0, 700, 60.0)],
    [gpu(0, 20.0, 200, 41.0), gpu(1, 60.0, 750, 61.0)],
    [gpu(0, 30.0, 300, 42.0), gpu(1, 70.0, 800, 62.0)],
]


def test_metrics_over_the_window() -> None:
    probe = ScriptedProbe(TWO_GPUS)
    result = run(probe, window="2s", interval="1s")
    assert result.ok, result.summary
    assert probe.asked_at == [0.0, 1.0, 2.0]  # at 0, interval, 2 x interval: no drift
    assert probe.closed
    m = result.metrics
    assert m["gpu.count"] == 2 and m["gpu.samples"] == 3
    assert m["gpu.utilization_pct"] == 40.0  # mean of 10..30 and 50..70
    assert m["gpu.utilization_pct.max"] == 70.0
    assert m["gpu.0.utilization_pct"] == 20.0 and m["gpu.0.utilization_pct.max"] == 30.0
    assert m["gpu.1.utilization_pct"] == 60.0 and m["gpu.1.utilization_pct.max"] == 70.0
    assert m["gpu.memory_utilization_pct"] == 47.5  # (10+20+30+70+75+80) / 6 % in use
    assert m["gpu.1.memory_utilization_pct"] == 75.0
    assert m["gpu.1.memory_utilization_pct.max"] == 80.0
    assert m["gpu.memory_busy_pct"] == 20.0
    assert m["gpu.temperature_c"] == 51.0 and m["gpu.temperature_c.max"] == 62.0
    assert result.details == {"skipped": False, "devices": [0, 1]}
    assert result.summary.startswith("sampled 2 GPUs (3 readings every 1s over 2s)")


def test_evidence_reads_like_nvidia_smi_and_is_hashed() -> None:
    result = run(ScriptedProbe(TWO_GPUS), window="2s", interval="1s")
    (evidence,) = result.evidence
    assert evidence.source == "nvml" and evidence.verified and evidence.at
    assert evidence.sha256 == result.output_sha256
    assert evidence.sha256 == hashlib.sha256(result.output.encode()).hexdigest()
    assert result.output_bytes == len(result.output.encode())
    assert evidence.metrics == result.metrics
    lines = evidence.excerpt.splitlines()
    assert "Util% avg" in lines[1] and "Memory-Usage (last)" in lines[1]
    assert lines[2].split()[:4] == ["0", "Fake", "GPU", "0"]
    assert "300MiB /   1000MiB" in lines[2]  # the last reading's memory
    assert lines[4].split()[:5] == ["all", "40.0", "70.0", "47.5", "80.0"]
    assert "2.000,1,GPU-1abc-0000,70,800,1000,35,62" in result.output  # every raw reading
    assert evidence.detail["readings"] == 3
    assert evidence.detail["devices"][1] == {
        "index": 1,
        "uuid": "GPU-1abc-0000",
        "name": "Fake GPU 1",
    }


def test_gate_criteria_of_the_seed_parse_over_these_metrics() -> None:
    for text in (
        "gpu.utilization_pct > 50",
        "gpu.memory_utilization_pct > 70",
        "gpu.0.utilization_pct.max >= 50",
    ):
        assert parse_criterion(text)


def test_step_sees_only_its_cuda_visible_devices() -> None:
    result = run(ScriptedProbe(TWO_GPUS), env=cuda_env((1,)), window=0)
    assert result.ok and result.metrics["gpu.count"] == 1
    assert "gpu.0.utilization_pct" not in result.metrics
    assert result.metrics["gpu.utilization_pct"] == 50.0
    by_uuid = run(ScriptedProbe(TWO_GPUS), env={"CUDA_VISIBLE_DEVICES": "GPU-0abc"}, window=0)
    assert by_uuid.details["devices"] == [0]


def test_devices_parameter_comes_before_the_environment() -> None:
    result = run(ScriptedProbe(TWO_GPUS), env=cuda_env((1,)), window=0, devices=[0])
    assert result.details["devices"] == [0]


def test_devices_not_present_fail_clearly() -> None:
    result = run(ScriptedProbe(TWO_GPUS), window=0, devices=[5])
    assert not result.ok
    assert result.summary.startswith("devices: GPU 5 is not present; this machine has 0 (GPU-")
    odd = run(ScriptedProbe(TWO_GPUS), env={"CUDA_VISIBLE_DEVICES": "7"}, window=0)
    assert not odd.ok and "'7' names no single GPU" in odd.summary


@pytest.mark.parametrize("visible", ["", "-1", "NoDevFiles"])
def test_an_empty_cuda_visible_devices_means_no_gpu(visible: str) -> None:
    result = run(ScriptedProbe(TWO_GPUS), env={"CUDA_VISIBLE_DEVICES": visible}, window=0)
    assert not result.ok and result.metrics == {"gpu.count": 0.0}
    assert result.summary == f"no GPU: CUDA_VISIBLE_DEVICES={visible!r} shows this step no GPU"


def test_readings_a_gpu_does_not_give_are_left_out() -> None:
    mig = [[gpu(0, None, 500, None)]]
    result = run(ScriptedProbe(mig), window="1s", interval="500ms")
    assert result.ok
    assert "gpu.utilization_pct" not in result.metrics
    assert "gpu.temperature_c" not in result.metrics
    assert result.metrics["gpu.memory_utilization_pct"] == 50.0
    assert "utilization n/a% avg" in result.summary


def test_a_gpu_lost_in_the_window_fails_the_step() -> None:
    probe = ScriptedProbe(TWO_GPUS, fail_at=2)
    result = run(probe, window="3s", interval="1s")
    assert not result.ok and probe.closed
    assert result.summary.startswith("GPU readings stopped after 2: a GPU has fallen off the bus")
    gone = ScriptedProbe([TWO_GPUS[0], [gpu(0, 1.0, 1)]])
    assert run(gone, window="1s", interval="1s").summary.endswith(
        "GPU 1 disappeared during the window"
    )


def test_a_probe_that_sees_no_gpu_is_no_gpu() -> None:
    result = run(ScriptedProbe([[]]), window="2s", on_no_gpu="skip")
    assert result.ok and result.details["skipped"] is True
    assert result.summary == "skipped: no GPU: the NVIDIA driver sees no GPU"


def test_params_are_checked_at_the_boundary() -> None:
    with pytest.raises(pydantic.ValidationError, match="interval must be above zero"):
        GpuSampleParams.model_validate({"interval": 0})
    with pytest.raises(pydantic.ValidationError, match="more than 10000 readings"):
        GpuSampleParams.model_validate({"window": "1h", "interval": "10ms"})
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        GpuSampleParams.model_validate({"windw": "5s"})
    with pytest.raises(pydantic.ValidationError):
        GpuSampleParams.model_validate({"on_no_gpu": "ignore"})
    assert GpuSampleParams.model_validate({"window": "300ms", "interval": "100ms"}).readings == 4


def test_summarize_of_no_readings_is_zero_gpus() -> None:
    assert summarize([]) == {"gpu.count": 0.0, "gpu.samples": 0.0}


# -- the real NVML path on this machine ------------------------------------------------------


def nvidia_driver_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


no_driver = pytest.mark.skipif(nvidia_driver_present(), reason="an NVIDIA driver is here")


def real_registry() -> ActionRegistry:
    registry = ActionRegistry()
    register(registry)  # NVML
    return registry


@no_driver
async def test_no_driver_gives_no_gpu_evidence_and_fails() -> None:
    params = GpuSampleParams.model_validate({"window": "2s", "interval": "1s"})
    with anyio.fail_after(10):
        result = await real_registry()["gpu.sample"].run(ctx(), params)
    assert not result.ok
    assert result.summary == "no GPU: no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert result.metrics == {"gpu.count": 0.0}
    assert result.details == {
        "skipped": False,
        "reason": "no NVIDIA driver (libnvidia-ml.so.1 not found)",
    }
    (evidence,) = result.evidence
    assert evidence.check == "no GPU: no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert evidence.source == "nvml" and evidence.verified
    assert evidence.sha256 == hashlib.sha256(result.output.encode()).hexdigest()
    assert "fix: install the NVIDIA driver" in result.output
    assert "Traceback" not in result.output


@no_driver
async def test_no_driver_is_skipped_when_the_plan_says_so() -> None:
    params = GpuSampleParams.model_validate({"window": "2s", "on_no_gpu": "skip"})
    with anyio.fail_after(10):
        result = await real_registry()["gpu.sample"].run(ctx(), params)
    assert result.ok
    assert result.summary == "skipped: no GPU: no NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert result.details["skipped"] is True
    assert result.metrics == {"gpu.count": 0.0}
    assert result.evidence[0].check.startswith("no GPU: ")


@pytest.mark.skipif(not nvidia_driver_present(), reason="no NVIDIA driver here")
async def test_real_gpus_are_sampled() -> None:
    params = GpuSampleParams.model_validate({"window": "1s", "interval": "250ms"})
    with anyio.fail_after(30):
        result = await real_registry()["gpu.sample"].run(ctx(), params)
    assert result.ok, result.summary
    assert result.metrics["gpu.samples"] == 5
    count = int(result.metrics["gpu.count"])
    assert count >= 1 and "gpu.memory_utilization_pct" in result.metrics
    assert result.evidence[0].source == "nvml"
