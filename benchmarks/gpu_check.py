"""GPU check: the NVML path end to end, in one command, on a machine with an NVIDIA GPU.

Usage::

    .venv/bin/python benchmarks/gpu_check.py [--seconds 5] [--interval 0.5]
                                             [--no-load] [--fill-pct 75] [--json PATH]

What it does and prints:

1. ``NvmlProbe`` reads every GPU twice (timed) and lists them like nvidia-smi.
2. If ``nvidia-smi`` is on PATH, it is asked the same; UUIDs and memory totals must agree.
3. ``GpuAllocator``: two exclusive requests get different GPUs (on a one-GPU machine the
   second must time out instead), a shared request may join a shared one, and a request
   for one GPU more than present fails at once.
4. Load (unless ``--no-load``): a child process, given the allocator's
   ``CUDA_VISIBLE_DEVICES``, fills ``--fill-pct`` of that GPU's memory and spins a kernel
   (PTX loaded through libcuda: no CUDA toolkit needed) while ``gpu.sample`` reads every GPU
   and, separately, the step's GPU through its environment. That GPU must show utilisation
   above 50 % and memory above 70 % (the seed's gate), the others must be untouched by it.

Exit status: 0 every check passed; 1 no GPU (the reason printed, as a step would see it);
2 a check failed. Without a GPU it also shows what ``gpu.sample`` reports then.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from agents.actions.gpu import GpuSampleParams, register  # noqa: E402
from agents.base import ActionContext, ActionResult  # noqa: E402
from agents.gpus import (  # noqa: E402
    GpuAllocator,
    GpuRequestTooLarge,
    GpuSample,
    GpuUnavailable,
    GpuWaitTimeout,
    NvmlProbe,
    cuda_env,
)
from agents.registry import ActionRegistry  # noqa: E402

MIB = 1024 * 1024


class Checks:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def add(self, name: str, passed: bool, detail: str) -> None:
        self.results.append({"check": name, "passed": passed, "detail": detail})
        print(f"check: {name}: {'PASS' if passed else 'FAIL'} ({detail})")

    @property
    def passed(self) -> bool:
        return all(r["passed"] for r in self.results)


def show(gpus: tuple[GpuSample, ...]) -> None:
    print(
        f"{'GPU':>3}  {'Name':<28} {'UUID':<40} {'Util%':>5} {'Mem%':>5}  "
        f"{'Memory-Usage':>19} {'Temp':>4}"
    )
    for g in gpus:
        util = "n/a" if g.utilization_pct is None else f"{g.utilization_pct:.0f}"
        temp = "n/a" if g.temperature_c is None else f"{g.temperature_c:.0f}"
        print(
            f"{g.index:>3}  {g.name[:28]:<28} {g.uuid:<40} {util:>5} "
            f"{g.memory_utilization_pct:>5.1f}  {g.memory_used_bytes // MIB:>7}MiB / "
            f"{g.memory_total_bytes // MIB:>6}MiB {temp:>4}"
        )


def nvidia_smi(gpus: tuple[GpuSample, ...], checks: Checks) -> None:
    if shutil.which("nvidia-smi") is None:
        print("nvidia-smi: not on PATH, cross-check skipped")
        return
    query = "index,uuid,name,utilization.gpu,memory.used,memory.total,temperature.gpu"
    done = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    print(f"nvidia-smi --query-gpu={query} (exit {done.returncode}):")
    print(done.stdout.rstrip() or done.stderr.rstrip())
    rows = [[c.strip() for c in line.split(",")] for line in done.stdout.splitlines() if line]
    theirs = {(r[1], int(r[5])) for r in rows if len(r) == 7 and r[5].isdigit()}
    ours = {(g.uuid, g.memory_total_bytes // MIB) for g in gpus}
    checks.add(
        "nvidia-smi agrees on UUIDs and memory totals",
        theirs == ours,
        f"nvml {sorted(ours)}, nvidia-smi {sorted(theirs)}",
    )


async def allocator(probe: NvmlProbe, present: int, checks: Checks) -> tuple[int, ...]:
    gpus = GpuAllocator(probe)
    first = await gpus.allocate("gpu-check/a", 1, exclusive=True)
    print(f"allocator: gpu-check/a got GPU {first} -> {cuda_env(first)}")
    try:
        second = await gpus.allocate("gpu-check/b", 1, exclusive=True, timeout_s=1.0)
        checks.add(
            "two exclusive requests get different GPUs",
            set(first).isdisjoint(second),
            f"a={first}, b={second}",
        )
    except GpuWaitTimeout as exc:
        checks.add("second exclusive request waits on a one-GPU machine", present == 1, str(exc))
    gpus.release("gpu-check/b")
    try:
        await gpus.allocate("gpu-check/c", 1, exclusive=False, timeout_s=1.0)
        checks.add(
            "a shared request never gets an exclusive GPU",
            first[0] not in gpus.holds()["gpu-check/c"].indices,
            f"c={gpus.holds()['gpu-check/c'].indices}",
        )
    except GpuWaitTimeout as exc:
        checks.add("a shared request waits when every GPU is exclusive", present == 1, str(exc))
    gpus.release("gpu-check/c")
    started = time.perf_counter()
    try:
        await gpus.allocate("gpu-check/huge", present + 1)
        checks.add("too many GPUs fail at once", False, "it was granted")
    except GpuRequestTooLarge as exc:
        took = time.perf_counter() - started
        checks.add("too many GPUs fail at once", took < 5, f"{took * 1000:.0f} ms: {exc}")
    gpus.release("gpu-check/a")
    return first


async def sample(env: dict[str, str], seconds: float, interval: float) -> ActionResult:
    registry = ActionRegistry()
    register(registry)
    ctx = ActionContext(
        run_id="gpu-check",
        stream="gpu",
        step="sample",
        agent="gpu-check",
        attempt=1,
        fences={},
        env=env,
        workdir=ROOT,
    )
    params = GpuSampleParams(window=seconds, interval=interval)
    return await registry["gpu.sample"].run(ctx, params)


def report(result: ActionResult, title: str) -> None:
    print(f"\ngpu.sample ({title}): ok={result.ok} {result.summary}")
    for e in result.evidence:
        print(f"evidence [{e.source}, verified={e.verified}, sha256={e.sha256}]: {e.check}")
        print(e.excerpt)
    print("metrics:", json.dumps(dict(result.metrics), sort_keys=True))


async def with_load(
    gpu: int, args: argparse.Namespace, checks: Checks
) -> tuple[ActionResult, ActionResult] | None:
    env = {**os.environ, **cuda_env((gpu,))}
    argv = [
        sys.executable,
        __file__,
        "--spin",
        str(args.seconds + 3),
        "--fill-pct",
        str(args.fill_pct),
    ]
    async with await anyio.open_process(argv, env=env, stderr=None) as child:
        assert child.stdout is not None
        try:
            with anyio.fail_after(60):
                line = await BufferedByteReceiveStream(child.stdout).receive_until(b"\n", 4096)
        except (anyio.EndOfStream, anyio.IncompleteRead, TimeoutError):
            line = b"no answer"
        text = line.decode(errors="replace")
        print(f"load on GPU {gpu}: {text}")
        if not text.startswith("ready"):
            checks.add("a CUDA load runs on the allocated GPU", False, text)
            child.kill()
            return None
        await anyio.sleep(1.0)  # let NVML's utilisation window fill with the kernel
        results: dict[str, ActionResult] = {}

        async def run(name: str, step_env: dict[str, str]) -> None:
            results[name] = await sample(step_env, args.seconds, args.interval)

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "all", {})
            tg.start_soon(run, "step", cuda_env((gpu,)))
        with anyio.move_on_after(30):
            await child.wait()
        if child.returncode is None:
            child.kill()
    return results["all"], results["step"]


async def check(args: argparse.Namespace) -> int:
    checks = Checks()
    async with NvmlProbe() as probe:
        try:
            started = time.perf_counter()
            gpus = await probe.devices()
            first_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            await probe.devices()
            second_ms = (time.perf_counter() - started) * 1000
        except GpuUnavailable as exc:
            print(exc)
            report(await sample({}, 0, 1), "no GPU")
            return 1
        if not gpus:
            print("no GPU: the NVIDIA driver sees no GPU")
            report(await sample({}, 0, 1), "no GPU")
            return 1
        print(
            f"nvml: ok, {len(gpus)} GPU(s); first reading (with nvmlInit) {first_ms:.1f} ms, "
            f"next {second_ms:.1f} ms"
        )
        show(gpus)
        nvidia_smi(gpus, checks)
        try:
            chosen = await allocator(probe, len(gpus), checks)
        except GpuUnavailable as exc:
            checks.add("the allocator reads the GPUs", False, str(exc))
            return 2
    if args.no_load:
        report(await sample({}, args.seconds, args.interval), "all GPUs, no load")
    else:
        loaded = await with_load(chosen[0], args, checks)
        if loaded is not None:
            everything, step = loaded
            report(everything, "all GPUs, under load")
            report(step, f"the step's GPU, CUDA_VISIBLE_DEVICES={chosen[0]}")
            k = chosen[0]
            util = step.metrics.get(f"gpu.{k}.utilization_pct")
            mem = step.metrics.get(f"gpu.{k}.memory_utilization_pct")
            checks.add(
                "the step's env selects its GPU only",
                step.metrics.get("gpu.count") == 1,
                f"gpu.count={step.metrics.get('gpu.count')}",
            )
            checks.add(
                "GPU utilization > 50% under load",
                isinstance(util, float) and util > 50,
                f"gpu.{k}.utilization_pct={util}",
            )
            checks.add(
                f"GPU memory utilization > 70% with {args.fill_pct}% filled",
                isinstance(mem, float) and mem > 70,
                f"gpu.{k}.memory_utilization_pct={mem}",
            )
    if args.json:
        await anyio.Path(args.json).write_text(json.dumps(checks.results, indent=2) + "\n")
    print(
        f"\n{sum(r['passed'] for r in checks.results)} passed, "
        f"{sum(not r['passed'] for r in checks.results)} failed"
    )
    return 0 if checks.passed else 2


# -- the load: a kernel spinning on clock64, through the CUDA driver API ------------------

_PTX = b"""
.version 7.0
.target sm_75
.address_size 64

.visible .entry spin(.param .u64 cycles)
{
    .reg .pred %p<2>;
    .reg .b64 %rd<5>;
    ld.param.u64 %rd1, [cycles];
    mov.u64 %rd2, %clock64;
$Lspin:
    mov.u64 %rd3, %clock64;
    sub.s64 %rd4, %rd3, %rd2;
    setp.lt.u64 %p1, %rd4, %rd1;
    @%p1 bra $Lspin;
    ret;
}
"""


def spin(seconds: float, fill_pct: float) -> int:
    """Fill memory up to ``fill_pct`` % and keep a kernel running on CUDA device 0."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        print(f"failed: libcuda.so.1 not loadable: {exc}", flush=True)
        return 1

    def call(name: str, *argv: Any) -> None:
        code = getattr(cuda, name)(*argv)
        if code != 0:
            text = ctypes.c_char_p()
            cuda.cuGetErrorName(code, ctypes.byref(text))
            raise RuntimeError(f"{name} failed: {(text.value or b'?').decode()} ({code})")

    device, context = ctypes.c_int(), ctypes.c_void_p()
    module, function = ctypes.c_void_p(), ctypes.c_void_p()
    free, total, buffer = ctypes.c_size_t(), ctypes.c_size_t(), ctypes.c_uint64()
    try:
        call("cuInit", 0)
        call("cuDeviceGet", ctypes.byref(device), 0)
        call("cuDevicePrimaryCtxRetain", ctypes.byref(context), device)
        call("cuCtxSetCurrent", context)
        call("cuMemGetInfo_v2", ctypes.byref(free), ctypes.byref(total))
        want = int(total.value * fill_pct / 100) - (total.value - free.value)
        size = max(0, min(want, free.value - 512 * MIB))
        if size:
            call("cuMemAlloc_v2", ctypes.byref(buffer), ctypes.c_size_t(size))
            call("cuMemsetD8_v2", buffer, ctypes.c_ubyte(1), ctypes.c_size_t(size))
        call("cuModuleLoadData", ctypes.byref(module), ctypes.c_char_p(_PTX))
        call("cuModuleGetFunction", ctypes.byref(function), module, b"spin")
        cycles = ctypes.c_uint64(100_000_000)  # about 50 ms a launch
        params = (ctypes.c_void_p * 1)(ctypes.addressof(cycles))
        cuda.cuLaunchKernel.argtypes = (
            [ctypes.c_void_p]
            + [ctypes.c_uint] * 7
            + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        )
        print(f"ready: {size // MIB} MiB filled, spinning {seconds:g}s", flush=True)
        deadline = time.monotonic() + seconds
        launches = 0
        while time.monotonic() < deadline:
            call("cuLaunchKernel", function, 1, 1, 1, 1, 1, 1, 0, None, params, None)
            call("cuCtxSynchronize")
            launches += 1
        print(f"done: {launches} launches", file=sys.stderr)
        return 0
    except RuntimeError as exc:
        print(f"failed: {exc}", flush=True)
        return 1


def main() -> int:
    parser = argparse.ArgumentParser(description="The NVML path end to end (see the module doc).")
    parser.add_argument("--seconds", type=float, default=5.0, help="sampling window")
    parser.add_argument("--interval", type=float, default=0.5, help="between readings")
    parser.add_argument("--no-load", action="store_true", help="do not start a CUDA load")
    parser.add_argument(
        "--fill-pct", type=float, default=75.0, help="memory of the loaded GPU to fill, in percent"
    )
    parser.add_argument("--json", help="write the checks here as JSON")
    parser.add_argument("--spin", type=float, help=argparse.SUPPRESS)  # the load's child
    args = parser.parse_args()
    if args.spin is not None:
        return spin(args.spin, args.fill_pct)
    return anyio.run(check, args)


if __name__ == "__main__":
    sys.exit(main())
