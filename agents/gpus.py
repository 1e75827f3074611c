"""GPUs: reading them through NVML, and handing them to the steps that need them.

:class:`GpuProbe` is the boundary between the orchestrator and the GPUs (tests put a fake
there): :class:`NvmlProbe` reads every GPU with pynvml, from the ``nvidia-ml-py`` package.
NVML calls block, so each reading runs in a worker thread under a deadline; NVML is
initialised on the first reading and shut down by :meth:`NvmlProbe.aclose`.

:class:`GpuAllocator` gives a step that declares ``gpus: N`` the N least-loaded GPUs of a
fresh reading (by utilisation, then memory in use). A GPU held exclusively goes to nobody
else, and an exclusive request gets only GPUs that nobody holds. When too few are free the
request waits until a release wakes it (no polling), served in arrival order among the
requests that fit; one that has waited ``starve_after_s`` keeps what frees up for itself.

The errors, drawn into the tree of :mod:`foundation.errors`::

    OrchestratorError
    ├── GpuError
    │   ├── GpuUnavailable          no driver, no GPU, or NVML failed or did not answer
    │   └── GpuRequestTooLarge      a step asks for more GPUs than the machine has
    └── CoordinationError
        └── LockWaitTimeout
            └── GpuWaitTimeout      too few GPUs came free within the step's lock_timeout
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio
import anyio.to_thread
import structlog

from foundation.errors import LockWaitTimeout, OrchestratorError

__all__ = [
    "GpuAllocator",
    "GpuError",
    "GpuHold",
    "GpuProbe",
    "GpuRequestTooLarge",
    "GpuSample",
    "GpuUnavailable",
    "GpuWaitTimeout",
    "NvmlProbe",
    "OnGpusBlocked",
    "cuda_env",
]

_diag = structlog.get_logger("agents.gpus")
T = TypeVar("T")


class GpuError(OrchestratorError):
    """Base for GPU errors that a step can meet before its action runs."""


class GpuUnavailable(GpuError):
    """No GPU can be read or used here; ``reason`` says why and ``fix`` what to do."""

    def __init__(self, reason: str, fix: str = "") -> None:
        self.reason = reason
        self.fix = fix
        text = f"no GPU: {reason}"
        super().__init__(f"{text} (fix: {fix})" if fix else text)


class GpuRequestTooLarge(GpuError):
    """``holder`` asks for ``requested`` GPUs; the machine has ``present``."""

    def __init__(self, holder: str, requested: int, present: int) -> None:
        self.holder = holder
        self.requested = requested
        self.present = present
        super().__init__(
            f"{holder}: asks for {_gpus(requested)} but this machine has {present} "
            f"(fix: lower the step's gpus: to at most {present}, or run it on a larger machine)"
        )


class GpuWaitTimeout(LockWaitTimeout):
    """Too few GPUs came free for ``holder`` within ``waited_s``; ``held_by`` maps each GPU
    to its holders then. A :class:`LockWaitTimeout`, so a step queues again as it does for
    locks."""

    def __init__(
        self,
        holder: str,
        count: int,
        exclusive: bool,
        waited_s: float,
        held_by: Mapping[int, tuple[str, ...]],
    ) -> None:
        super().__init__(holder, [f"{_gpus(count)}{' exclusively' if exclusive else ''}"], waited_s)
        self.count = count
        self.exclusive = exclusive
        self.held_by = dict(held_by)
        if held_by:
            held = "; ".join(f"GPU {i}: {', '.join(h)}" for i, h in sorted(held_by.items()))
            self.args = (f"{self.args[0]} (held by {held})",)


def _gpus(count: int) -> str:
    return f"{count} GPU{'s' if count != 1 else ''}"


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of one GPU. ``index`` is NVML's (and nvidia-smi's) numbering.

    ``utilization_pct`` is the share of time a kernel ran (nvidia-smi's GPU-Util);
    ``memory_busy_pct`` the share of time memory was read or written (NVML's "memory
    utilization"); :attr:`memory_utilization_pct` the share of memory in use (nvidia-smi's
    Memory-Usage). None: the GPU does not report it (for example in MIG mode).
    """

    index: int
    uuid: str
    name: str
    utilization_pct: float | None
    memory_used_bytes: int
    memory_total_bytes: int
    temperature_c: float | None
    memory_busy_pct: float | None = None

    @property
    def memory_utilization_pct(self) -> float:
        """Memory in use as a percentage of the total (0 when the total is unknown)."""
        if self.memory_total_bytes <= 0:
            return 0.0
        return 100.0 * self.memory_used_bytes / self.memory_total_bytes


@runtime_checkable
class GpuProbe(Protocol):
    """Reads the machine's GPUs."""

    async def devices(self) -> Sequence[GpuSample]:
        """A fresh reading of every GPU, by index; empty when the driver sees none.
        Raises :class:`GpuUnavailable` when there is no driver or the reading fails."""
        ...

    async def aclose(self) -> None:
        """Release what the probe holds; never raises."""
        ...


# Why an NVML error happened and what to do, by pynvml's exception class name.
_NVML_REASONS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "NVMLError_LibraryNotFound": (
            "no NVIDIA driver (libnvidia-ml.so.1 not found)",
            "install the NVIDIA driver, or run GPU steps on a machine that has one",
        ),
        "NVMLError_DriverNotLoaded": (
            "the NVIDIA driver is not loaded",
            "load the nvidia kernel module (modprobe nvidia) or reboot",
        ),
        "NVMLError_NoPermission": (
            "no permission to read the GPUs through NVML",
            "run the daemon as a user that may open /dev/nvidia*",
        ),
        "NVMLError_LibRmVersionMismatch": (
            "the NVML library and the loaded NVIDIA kernel driver differ in version",
            "reboot, or reload the nvidia kernel module after the driver upgrade",
        ),
        "NVMLError_GpuIsLost": (
            "a GPU has fallen off the bus (NVML: GPU is lost)",
            "reset the GPU (nvidia-smi -r) or reboot",
        ),
        "NVMLError_FunctionNotFound": (
            "the NVIDIA driver is too old for the NVML calls used",
            "upgrade the NVIDIA driver",
        ),
        "NVMLError_Timeout": ("NVML timed out talking to the driver", "check nvidia-smi"),
    }
)


def _nvml_unavailable(exc: Exception, where: str = "") -> GpuUnavailable:
    reason, fix = _NVML_REASONS.get(type(exc).__name__, (f"NVML failed: {exc}", "check nvidia-smi"))
    return GpuUnavailable(f"{where}{reason}", fix)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlProbe:
    """:class:`GpuProbe` over NVML. Each :meth:`devices` call gets ``call_timeout_s``; a
    call that does not return by then is abandoned (its thread left to finish) and reported
    as :class:`GpuUnavailable`. Usable as ``async with NvmlProbe() as probe``."""

    def __init__(self, *, call_timeout_s: float = 5.0) -> None:
        self.call_timeout_s = call_timeout_s
        # Held by the worker thread for the whole of an NVML reading: one at a time, even
        # when an abandoned reading is still running.
        self._lock = threading.Lock()
        # The pynvml module once nvmlInit succeeded (Any: pynvml ships no type hints).
        self._nvml: Any = None

    async def __aenter__(self) -> NvmlProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def devices(self) -> tuple[GpuSample, ...]:
        return await self._in_thread(self._read_all, "read the GPUs")

    async def aclose(self) -> None:
        if self._nvml is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self._in_thread(self._shutdown, "shut down")
            except GpuUnavailable as exc:
                _diag.warning("nvml_shutdown_failed", reason=exc.reason)

    async def _in_thread(self, func: Callable[[], T], what: str) -> T:
        with anyio.move_on_after(self.call_timeout_s):
            return await anyio.to_thread.run_sync(func, abandon_on_cancel=True)
        raise GpuUnavailable(
            f"NVML did not {what} within {self.call_timeout_s:g}s",
            "check nvidia-smi: the driver or a GPU may be hung",
        )

    def _locked(self) -> None:
        if not self._lock.acquire(timeout=self.call_timeout_s):
            raise GpuUnavailable(
                "an earlier NVML call has not returned", "check nvidia-smi: the driver may be hung"
            )

    def _init(self) -> Any:
        if self._nvml is not None:
            return self._nvml
        try:
            import pynvml
        except ImportError:
            raise GpuUnavailable(
                "the nvidia-ml-py package (module pynvml) is not installed",
                "pip install nvidia-ml-py",
            ) from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise _nvml_unavailable(exc) from None
        self._nvml = pynvml
        return pynvml

    def _read_all(self) -> tuple[GpuSample, ...]:
        self._locked()
        try:
            nvml = self._init()
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as exc:
                raise _nvml_unavailable(exc) from None
            return tuple(self._read_one(nvml, index) for index in range(count))
        finally:
            self._lock.release()

    @staticmethod
    def _read_one(nvml: Any, index: int) -> GpuSample:
        def optional(read: Callable[[], T]) -> T | None:
            try:
                return read()
            except (nvml.NVMLError_NotSupported, nvml.NVMLError_NoData):
                return None

        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            rates = optional(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
            temperature = optional(
                lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            )
            return GpuSample(
                index=index,
                uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
                name=_text(nvml.nvmlDeviceGetName(handle)),
                utilization_pct=None if rates is None else float(rates.gpu),
                memory_used_bytes=int(memory.used),
                memory_total_bytes=int(memory.total),
                temperature_c=None if temperature is None else float(temperature),
                memory_busy_pct=None if rates is None else float(rates.memory),
            )
        except nvml.NVMLError as exc:
            raise _nvml_unavailable(exc, f"GPU {index}: ") from None

    def _shutdown(self) -> None:
        self._locked()
        try:
            if self._nvml is not None:
                nvml, self._nvml = self._nvml, None
                try:
                    nvml.nvmlShutdown()
                except nvml.NVMLError as exc:
                    raise _nvml_unavailable(exc) from None
        finally:
            self._lock.release()


def cuda_env(indices: Sequence[int]) -> dict[str, str]:
    """The environment that shows a step exactly the GPUs ``indices`` (NVML numbering),
    with CUDA numbering devices as nvidia-smi and NVML do (by PCI bus id)."""
    return {
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in indices),
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


@dataclass(frozen=True, slots=True)
class GpuHold:
    """GPUs granted to ``holder``, least-loaded first."""

    holder: str
    indices: tuple[int, ...]
    exclusive: bool


#: Told once, synchronously, which GPUs are held by whom when a request has to wait.
OnGpusBlocked = Callable[[Mapping[int, tuple[str, ...]]], None]


@dataclass(eq=False, slots=True)
class _Waiter:
    holder: str
    count: int
    exclusive: bool
    since: float
    wake: anyio.Event


class GpuAllocator:
    """Hands GPUs to steps (see the module doc). Holders are unique names such as
    ``run/stream/step``; :meth:`release` wakes every waiter."""

    def __init__(self, probe: GpuProbe, *, starve_after_s: float = 60.0) -> None:
        self.probe = probe
        self.starve_after_s = starve_after_s
        self._holds: dict[str, GpuHold] = {}
        self._waiters: list[_Waiter] = []  # in arrival order
        self._present: tuple[int, ...] = ()  # GPU indices at the latest reading

    def holds(self) -> Mapping[str, GpuHold]:
        """Who holds which GPUs now."""
        return MappingProxyType(dict(self._holds))

    def waiting(self) -> tuple[str, ...]:
        """The holders waiting for GPUs, in arrival order."""
        return tuple(w.holder for w in self._waiters)

    def held_by(self) -> dict[int, tuple[str, ...]]:
        """Each GPU someone holds, with its holders, by index."""
        held: dict[int, tuple[str, ...]] = {}
        for hold in self._holds.values():
            for index in hold.indices:
                held[index] = (*held.get(index, ()), hold.holder)
        return dict(sorted(held.items()))

    async def allocate(
        self,
        holder: str,
        count: int,
        *,
        exclusive: bool = True,
        timeout_s: float | None = None,
        on_blocked: OnGpusBlocked | None = None,
    ) -> tuple[int, ...]:
        """Give ``holder`` ``count`` GPUs, least-loaded first; wait for them if need be.

        Returns their indices (empty for ``count == 0``). Raises :class:`GpuUnavailable`
        (no driver or GPU, NVML failed), :class:`GpuRequestTooLarge` at once when ``count``
        exceeds the GPUs present, :class:`GpuWaitTimeout` after ``timeout_s`` (None: no
        limit), and ValueError for a negative count or a holder that already holds or waits.
        ``on_blocked`` is called once, synchronously, with :meth:`held_by` if it must wait.
        """
        if count < 0:
            raise ValueError(f"{holder}: cannot ask for {count} GPUs")
        if holder in self._holds or holder in self.waiting():
            raise ValueError(f"{holder} already holds or waits for GPUs")
        if count == 0:
            return ()
        waiter = _Waiter(holder, count, exclusive, anyio.current_time(), anyio.Event())
        with anyio.move_on_after(timeout_s):
            sample = await self._sample(waiter)
            self._waiters.append(waiter)
            try:
                return await self._take(waiter, sample, on_blocked)
            finally:
                self._waiters.remove(waiter)
                self._wake_all()  # a waiter that left may have let another one go first
        waited_s = anyio.current_time() - waiter.since
        raise GpuWaitTimeout(holder, count, exclusive, waited_s, self.held_by())

    def release(self, holder: str) -> None:
        """Give back what ``holder`` holds (nothing: no-op) and wake the waiters."""
        if self._holds.pop(holder, None) is not None:
            self._wake_all()

    async def _take(
        self, waiter: _Waiter, sample: Sequence[GpuSample], on_blocked: OnGpusBlocked | None
    ) -> tuple[int, ...]:
        while True:
            chosen = self._choose(waiter, sample)
            if chosen is not None:
                self._holds[waiter.holder] = GpuHold(waiter.holder, chosen, waiter.exclusive)
                return chosen
            if on_blocked is not None:
                on_blocked(self.held_by())
                on_blocked = None
            # Checked and armed with no await between: no release can slip past unseen.
            while True:
                waiter.wake = anyio.Event()
                await waiter.wake.wait()
                if self._may_take(waiter):
                    break
            sample = await self._sample(waiter)

    async def _sample(self, waiter: _Waiter) -> Sequence[GpuSample]:
        sample = await self.probe.devices()
        if not sample:
            raise GpuUnavailable(
                "the NVIDIA driver sees no GPU", "check nvidia-smi, or run the step elsewhere"
            )
        self._present = tuple(s.index for s in sample)
        if waiter.count > len(sample):
            raise GpuRequestTooLarge(waiter.holder, waiter.count, len(sample))
        return sample

    def _free(self, exclusive: bool) -> list[int]:
        """GPUs an exclusive (or shared) request may take now."""
        busy: set[int] = set()
        for hold in self._holds.values():
            if exclusive or hold.exclusive:
                busy.update(hold.indices)
        return [i for i in self._present if i not in busy]

    def _fits(self, waiter: _Waiter) -> bool:
        return len(self._free(waiter.exclusive)) >= waiter.count

    def _may_take(self, waiter: _Waiter) -> bool:
        """Whether ``waiter`` may take GPUs now: it fits, no earlier waiter fits, and no
        earlier waiter has waited long enough to keep what frees up for itself."""
        if not self._fits(waiter):
            return False
        now = anyio.current_time()
        for other in self._waiters:
            if other is waiter:
                break
            if self._fits(other) or now - other.since >= self.starve_after_s:
                return False
        return True

    def _choose(self, waiter: _Waiter, sample: Sequence[GpuSample]) -> tuple[int, ...] | None:
        if not self._may_take(waiter):
            return None
        free = set(self._free(waiter.exclusive))
        sharing = {i: 0 for i in free}
        for hold in self._holds.values():
            for index in hold.indices:
                if index in sharing:
                    sharing[index] += 1
        candidates = sorted(
            (s for s in sample if s.index in free),
            key=lambda s: (
                s.utilization_pct or 0.0,
                s.memory_utilization_pct,
                sharing[s.index],
                s.index,
            ),
        )
        return tuple(s.index for s in candidates[: waiter.count])

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.wake.set()
