"""The GPU allocator against a fake probe (our own Protocol), and the real NVML probe.

Allocator tests run on a virtual clock: a waiter that is woken "at once" is granted at the
very virtual instant of the release. The NVML tests take whichever path this machine
allows: without an NVIDIA driver the probe must say so cleanly; with one it must read the
GPUs.
"""

from __future__ import annotations

import ctypes
import random
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.lowlevel
import pynvml  # noqa: F401  (see below)
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.gpus import (
    GpuAllocator,
    GpuProbe,
    GpuRequestTooLarge,
    GpuSample,
    GpuUnavailable,
    GpuWaitTimeout,
    NvmlProbe,
    cuda_env,
)
from foundation.errors import LockWaitTimeout, OrchestratorError
from tests.helpers import on_virtual_clock

# pynvml is imported above, at collection, though only NvmlProbe uses it: importing it
# allocates enough to start a garbage-collection cycle, which would report here whatever
# an earlier test leaked (a ResourceWarning) as this test's failure.

ROOT = Path(__file__).resolve().parents[2]


class FakeProbe:
    """GPUs with fixed (utilisation %, memory %) loads, or an error, or random loads."""

    def __init__(
        self,
        loads: Sequence[tuple[float | None, float]] = (),
        *,
        error: GpuUnavailable | None = None,
        rng: random.Random | None = None,
        count: int = 0,
    ) -> None:
        self.loads = list(loads)
        self.error = error
        self.rng = rng
        self.count = count or len(self.loads)
        self.calls = 0

    async def devices(self) -> tuple[GpuSample, ...]:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        if self.rng is not None:
            self.loads = [
                (self.rng.uniform(0, 100), self.rng.uniform(0, 100)) for _ in range(self.count)
            ]
        return tuple(
            GpuSample(
                index=i,
                uuid=f"GPU-{i:08d}",
                name="Fake GPU",
                utilization_pct=util,
                memory_used_bytes=int(mem * 10),
                memory_total_bytes=1000,
                temperature_c=40.0,
            )
            for i, (util, mem) in enumerate(self.loads)
        )

    async def aclose(self) -> None:
        pass


def idle(count: int) -> FakeProbe:
    return FakeProbe([(0.0, 0.0)] * count)


def test_fake_probe_is_a_gpu_probe() -> None:
    assert isinstance(FakeProbe(), GpuProbe)
    assert isinstance(NvmlProbe(), GpuProbe)


def test_least_loaded_by_utilisation_then_memory() -> None:
    async def main() -> None:
        probe = FakeProbe([(50.0, 10.0), (10.0, 40.0), (10.0, 20.0), (90.0, 0.0), (None, 5.0)])
        gpus = GpuAllocator(probe)
        # GPU 4 does not report utilisation: it counts as idle, and has the least memory.
        assert await gpus.allocate("a", 1) == (4,)
        assert await gpus.allocate("b", 1) == (2,)  # 10 % busy, 20 % of memory
        assert await gpus.allocate("c", 2) == (1, 0)  # the least-loaded first
        assert gpus.holds()["c"].indices == (1, 0)
        assert probe.calls == 3  # one fresh reading per request

    on_virtual_clock(main)


def test_shared_gpus_go_to_shared_requests_only() -> None:
    async def main() -> None:
        gpus = GpuAllocator(FakeProbe([(0.0, 0.0), (5.0, 0.0)]))
        assert await gpus.allocate("excl", 1) == (0,)
        assert await gpus.allocate("shared-1", 1, exclusive=False) == (1,)
        assert await gpus.allocate("shared-2", 1, exclusive=False) == (1,)  # shares GPU 1
        with pytest.raises(GpuWaitTimeout) as info:
            await gpus.allocate("excl-2", 1, timeout_s=5)
        assert info.value.waited_s == pytest.approx(5)
        assert isinstance(info.value, LockWaitTimeout)  # the step runner queues it again
        assert info.value.held_by == {0: ("excl",), 1: ("shared-1", "shared-2")}
        assert "excl-2: not granted 1 GPU exclusively within 5s" in str(info.value)
        assert "GPU 0: excl; GPU 1: shared-1, shared-2" in str(info.value)
        assert gpus.waiting() == ()
        # A shared request never gets the exclusively held GPU 0.
        gpus.release("shared-1")
        gpus.release("shared-2")
        assert await gpus.allocate("shared-3", 1, exclusive=False) == (1,)

    on_virtual_clock(main)


def test_waiter_is_woken_by_release_without_polling() -> None:
    async def main() -> None:
        probe = idle(1)
        gpus = GpuAllocator(probe)
        granted: list[tuple[float, tuple[int, ...]]] = []

        await gpus.allocate("holder", 1)
        blocked: list[object] = []

        async def wait_for_gpu() -> None:
            indices = await gpus.allocate("waiter", 1, on_blocked=blocked.append)
            granted.append((anyio.current_time(), indices))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_gpu)
            await anyio.sleep(1000)
            assert granted == [] and gpus.waiting() == ("waiter",)
            assert blocked == [{0: ("holder",)}]  # told once, with who holds what
            assert probe.calls == 2  # the holder's and the waiter's first: no polling
            gpus.release("holder")
            released_at = anyio.current_time()
        assert granted == [(released_at, (0,))]
        assert probe.calls == 3  # one fresh reading after the wake-up

    on_virtual_clock(main)


def test_more_gpus_than_present_fails_at_once() -> None:
    async def main() -> None:
        gpus = GpuAllocator(idle(2))
        await gpus.allocate("busy", 2)
        with pytest.raises(GpuRequestTooLarge) as info:
            await gpus.allocate("greedy", 3)  # no timeout: it must not wait at all
        assert anyio.current_time() == 0
        assert (info.value.requested, info.value.present) == (3, 2)
        assert "greedy: asks for 3 GPUs but this machine has 2" in str(info.value)
        assert isinstance(info.value, OrchestratorError)
        assert gpus.waiting() == ()

    on_virtual_clock(main)


def test_no_gpu_is_reported_not_waited_for() -> None:
    async def main() -> None:
        down = GpuAllocator(FakeProbe(error=GpuUnavailable("no NVIDIA driver (test)")))
        with pytest.raises(GpuUnavailable, match="no GPU: no NVIDIA driver"):
            await down.allocate("a", 1)
        empty = GpuAllocator(FakeProbe([]))
        with pytest.raises(GpuUnavailable, match="the NVIDIA driver sees no GPU"):
            await empty.allocate("a", 1)
        assert await empty.allocate("cpu-only", 0) == ()  # asks for none: no reading
        assert anyio.current_time() == 0

    on_virtual_clock(main)


def test_bad_requests_are_refused() -> None:
    async def main() -> None:
        gpus = GpuAllocator(idle(2))
        await gpus.allocate("a", 1)
        with pytest.raises(ValueError, match="already holds"):
            await gpus.allocate("a", 1)
        with pytest.raises(ValueError, match="cannot ask for -1"):
            await gpus.allocate("b", -1)
        gpus.release("a")
        gpus.release("a")  # twice, or unknown: nothing happens
        gpus.release("nobody")
        assert gpus.holds() == {}

    on_virtual_clock(main)


def test_small_request_backfills_past_one_that_does_not_fit() -> None:
    async def main() -> None:
        gpus = GpuAllocator(idle(2), starve_after_s=100)
        order: list[str] = []

        async def take(holder: str, count: int) -> None:
            await gpus.allocate(holder, count)
            order.append(holder)

        await gpus.allocate("h", 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "big", 2)
            await anyio.sleep(1)
            await take("small", 1)  # one GPU is free and "big" needs two: no waiting
            assert anyio.current_time() == 1
            gpus.release("h")
            await anyio.sleep(1)
            assert order == ["small"]  # "big" still waits for the second GPU
            gpus.release("small")
        assert order == ["small", "big"]

    on_virtual_clock(main)


def test_a_starving_request_keeps_what_frees_up() -> None:
    async def main() -> None:
        gpus = GpuAllocator(idle(2), starve_after_s=10)
        granted: dict[str, float] = {}

        async def take(holder: str, count: int, at: float, hold_s: float) -> None:
            await anyio.sleep_until(at)
            await gpus.allocate(holder, count)
            granted[holder] = anyio.current_time()
            await anyio.sleep(hold_s)
            gpus.release(holder)

        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "h1", 1, 0, 5)  # GPU free again at 5
            tg.start_soon(take, "h2", 1, 0, 15)  # at 15
            tg.start_soon(take, "big", 2, 1, 5)
            tg.start_soon(take, "s1", 1, 6, 6)  # "big" waited 5s < 10s: s1 may take GPU 0
            tg.start_soon(take, "s2", 1, 13, 1)  # "big" is starving: s2 waits behind it
        assert granted == {"h1": 0, "h2": 0, "s1": 6, "big": 15, "s2": 20}

    on_virtual_clock(main)


def test_a_cancelled_waiter_lets_the_next_one_go_at_once() -> None:
    async def main() -> None:
        gpus = GpuAllocator(idle(2), starve_after_s=10)
        await gpus.allocate("h", 1)
        granted: list[float] = []

        async def small() -> None:
            await gpus.allocate("small", 1)
            granted.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            with anyio.move_on_after(25):
                async with anyio.create_task_group() as inner:
                    inner.start_soon(gpus.allocate, "big", 2)
                    await anyio.sleep(20)  # "big" is starving: GPU 1 is kept for it
                    tg.start_soon(small)
                    await anyio.sleep(1)
                    assert gpus.waiting() == ("big", "small")
            # "big" was cancelled at 25: "small" gets GPU 1 at that very instant.
            await anyio.sleep(1)
        assert granted == [25]
        assert gpus.holds()["small"].indices == (1,)

    on_virtual_clock(main)


requests = st.lists(
    st.tuples(
        st.floats(0, 20),  # arrival
        st.integers(1, 4),  # count (capped to the GPUs present)
        st.booleans(),  # exclusive
        st.floats(0, 10),  # hold
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(present=st.integers(1, 4), plan=requests, seed=st.integers(0, 2**32 - 1))
def test_exclusive_gpus_are_never_shared_under_random_load(
    present: int, plan: list[tuple[float, int, bool, float]], seed: int
) -> None:
    async def main() -> None:
        gpus = GpuAllocator(FakeProbe(rng=random.Random(seed), count=present), starve_after_s=15)
        using: dict[int, dict[str, bool]] = {i: {} for i in range(present)}
        finished: list[str] = []

        async def step(name: str, at: float, count: int, exclusive: bool, hold: float) -> None:
            await anyio.sleep(at)
            count = min(count, present)
            indices = await gpus.allocate(name, count, exclusive=exclusive)
            assert len(indices) == count == len(set(indices))
            for index in indices:
                holders = using[index]
                assert not any(holders.values()), f"GPU {index} is held exclusively"
                assert not (exclusive and holders), f"GPU {index} is in use"
                holders[name] = exclusive
            await anyio.sleep(hold)
            for index in indices:
                del using[index][name]
            gpus.release(name)
            finished.append(name)

        with anyio.fail_after(100_000):  # virtual: a lost wake-up shows as a timeout
            async with anyio.create_task_group() as tg:
                for n, (at, count, exclusive, hold) in enumerate(plan):
                    tg.start_soon(step, f"s{n}", at, count, exclusive, hold)
        assert len(finished) == len(plan)
        assert gpus.holds() == {} and gpus.waiting() == ()

    on_virtual_clock(main)


def test_cuda_env_numbers_gpus_as_nvml_does() -> None:
    assert cuda_env((2, 0)) == {"CUDA_VISIBLE_DEVICES": "2,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


# -- the real NVML probe -------------------------------------------------------------------


def nvidia_driver_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


HAS_DRIVER = nvidia_driver_present()


@pytest.mark.skipif(HAS_DRIVER, reason="an NVIDIA driver is installed here")
async def test_nvml_probe_without_a_driver_says_so_cleanly() -> None:
    with anyio.fail_after(10):
        async with NvmlProbe(call_timeout_s=5) as probe:
            for _ in range(2):  # and again: a failed init leaves nothing half-done
                with pytest.raises(GpuUnavailable) as info:
                    await probe.devices()
                assert info.value.reason == "no NVIDIA driver (libnvidia-ml.so.1 not found)"
                assert str(info.value).startswith("no GPU: no NVIDIA driver")
                assert "fix: install the NVIDIA driver" in str(info.value)
                # Nothing chained: what a user sees is the one line above.
                assert info.value.__cause__ is None and info.value.__suppress_context__
        with pytest.raises(GpuUnavailable, match=r"libnvidia-ml\.so\.1 not found"):
            await GpuAllocator(NvmlProbe()).allocate("run/s/step", 1, timeout_s=5)


async def test_a_hung_nvml_reading_is_abandoned_at_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = NvmlProbe(call_timeout_s=0.2)
    unblock = threading.Event()

    def hang() -> tuple[GpuSample, ...]:  # stands in for a driver that never answers
        unblock.wait(10)
        return ()

    monkeypatch.setattr(probe, "_read_all", hang)
    try:
        with anyio.fail_after(5), pytest.raises(GpuUnavailable) as info:
            await probe.devices()
    finally:
        unblock.set()
    assert str(info.value) == (
        "no GPU: NVML did not read the GPUs within 0.2s "
        "(fix: check nvidia-smi: the driver or a GPU may be hung)"
    )


@pytest.mark.skipif(not HAS_DRIVER, reason="no NVIDIA driver here")
async def test_nvml_probe_reads_every_gpu() -> None:
    with anyio.fail_after(30):
        async with NvmlProbe() as probe:
            first = await probe.devices()
            second = await probe.devices()
        assert first, "the driver is installed but NVML lists no GPU"
        assert [g.index for g in first] == list(range(len(first)))
        assert [g.uuid for g in first] == [g.uuid for g in second]
        for gpu in first:
            assert gpu.uuid.startswith(("GPU-", "MIG-")) and gpu.name
            assert gpu.memory_total_bytes > 0 and gpu.memory_used_bytes >= 0
            assert 0 <= gpu.memory_utilization_pct <= 100
            assert gpu.utilization_pct is None or 0 <= gpu.utilization_pct <= 100
            assert gpu.temperature_c is None or 0 < gpu.temperature_c < 120
        async with NvmlProbe() as again:  # init and shutdown pair up: a new probe works
            assert len(await again.devices()) == len(first)


def test_gpu_check_command_reports_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert "Traceback" not in done.stdout + done.stderr
    if HAS_DRIVER:
        assert done.returncode in (0, 2), done.stdout + done.stderr
        assert "nvml: ok" in done.stdout
    else:
        assert done.returncode == 1, done.stdout + done.stderr
        assert "no GPU: no NVIDIA driver (libnvidia-ml.so.1 not found)" in done.stdout
