"""NVIDIA GPUs through NVML: what each GPU and each process on it uses.

NVML is initialised once per process (nvmlInit loads the driver library and
costs far more than a whole sample) and again only after a fork, since a
child cannot use its parent's handle. A machine without the library or the
driver is not an error: it has no GPU, and read() says so.
"""

import os
import threading
from dataclasses import dataclass

import pynvml

NO_GPU = "no GPU"
# The library or driver is absent: the machine has no NVIDIA GPU to read, now or until a reboot.
_ABSENT = ("NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded")


class NvmlError(Exception):
    """NVML is there but failed (GPU lost, permissions, version mismatch): a real problem to report."""


@dataclass(frozen=True)
class GpuProcessUsage:
    pid: int
    used_bytes: int | None  # None where NVML cannot tell (e.g. Windows WDDM, MIG without permission)


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_used: int
    memory_total: int
    utilization: float | None
    temperature: float | None
    power_draw: float | None  # watts
    power_limit: float | None
    processes: tuple[GpuProcessUsage, ...]


@dataclass(frozen=True)
class Snapshot:
    gpus: tuple[Gpu, ...]
    status: str  # "" when NVML answered, NO_GPU without NVIDIA GPUs


_lock = threading.Lock()
_initialised_in: int | None = None  # the pid that called nvmlInit; another pid is a forked child
_absent = False
init_calls = 0  # how often nvmlInit ran in this process (the benchmark and tests read it)


def _absent_error(exc: Exception) -> bool:
    return any(isinstance(exc, getattr(pynvml, name, ())) for name in _ABSENT)


def _ensure_init() -> bool:
    """True when NVML is ready, False when the machine has no GPU; NvmlError otherwise."""
    global _initialised_in, _absent, init_calls
    with _lock:
        if _initialised_in == os.getpid():
            return True
        if _absent:
            return False
        init_calls += 1
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            if _absent_error(exc):
                _absent = True
                return False
            raise NvmlError(f"NVML failed to start: {exc}") from exc
        _initialised_in = os.getpid()
        return True


def reset() -> None:
    """Forget the initialisation (tests install a fresh fake library)."""
    global _initialised_in, _absent, init_calls
    with _lock:
        _initialised_in, _absent, init_calls = None, False, 0


def read() -> Snapshot:
    """Every GPU with its processes. Raises NvmlError when NVML is present but fails."""
    if not _ensure_init():
        return Snapshot((), NO_GPU)
    try:
        count = pynvml.nvmlDeviceGetCount()
        gpus = tuple(_read_gpu(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count))
    except pynvml.NVMLError as exc:
        raise NvmlError(f"NVML error: {exc}") from exc
    return Snapshot(gpus, "" if gpus else NO_GPU)


def _read_gpu(index: int, handle) -> Gpu:
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return Gpu(
        index=index,
        uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
        name=_text(pynvml.nvmlDeviceGetName(handle)),
        memory_used=int(memory.used),
        memory_total=int(memory.total),
        utilization=_optional(lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
        temperature=_optional(lambda: float(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))),
        power_draw=_optional(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000),  # milliwatts
        power_limit=_optional(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000),
        processes=_processes(handle),
    )


def _processes(handle) -> tuple[GpuProcessUsage, ...]:
    # A process using the GPU for compute and graphics at once is listed by both calls.
    seen: dict[int, GpuProcessUsage] = {}
    for query in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        for proc in _optional(lambda q=query: q(handle)) or ():
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid not in seen or seen[proc.pid].used_bytes is None:
                seen[proc.pid] = GpuProcessUsage(int(proc.pid), None if used is None else int(used))
    return tuple(sorted(seen.values(), key=lambda p: p.pid))


def _optional(read_value):
    """A value this GPU does not offer (consumer cards lack power limits, MIG lacks utilisation) is None."""
    try:
        return read_value()
    except pynvml.NVMLError_NotSupported:
        return None
    except pynvml.NVMLError_NoPermission:
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def driver_version() -> str:
    if not _ensure_init():
        return ""
    try:
        return _text(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:
        return ""
