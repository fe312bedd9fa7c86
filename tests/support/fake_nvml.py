"""A stand-in for pynvml (the hardware is the one thing CI does not have).

Same function names and exception classes as the ones glmadmin/lib/nvml.py
uses; install it with `install(monkeypatch, FakeNvml(...))`. GPUs are plain
dicts, so a test states exactly what the "driver" reports.
"""

from types import SimpleNamespace

from glmadmin.lib import nvml


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # pynvml's names
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class NVMLError_GpuIsLost(NVMLError):
    pass


def gpu(index=0, used=2 * 2**30, total=80 * 2**30, util=37, temp=54, power_mw=210_000, limit_mw=700_000,
        processes=(), name="NVIDIA H100 80GB HBM3"):
    """processes: (pid, used bytes or None) pairs."""
    return {"uuid": f"GPU-fake-{index}", "name": name, "used": used, "total": total, "util": util, "temp": temp,
            "power": power_mw, "limit": limit_mw, "processes": list(processes)}


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_GpuIsLost = NVMLError_GpuIsLost

    def __init__(self, gpus=(), init_error: Exception | None = None):
        self.gpus = list(gpus)
        self.init_error = init_error
        self.init_count = 0
        self.failing: dict[str, Exception] = {}  # function name -> exception it raises

    def _check(self, name):
        if self.init_count == 0:
            raise NVMLError("Uninitialized")
        if name in self.failing:
            raise self.failing[name]

    def nvmlInit(self):
        self.init_count += 1
        if self.init_error is not None:
            raise self.init_error

    def nvmlSystemGetDriverVersion(self):
        self._check("nvmlSystemGetDriverVersion")
        return "550.54.15"

    def nvmlDeviceGetCount(self):
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, handle):
        self._check("nvmlDeviceGetUUID")
        return handle["uuid"]

    def nvmlDeviceGetName(self, handle):
        self._check("nvmlDeviceGetName")
        return handle["name"].encode()  # older pynvml returns bytes

    def nvmlDeviceGetMemoryInfo(self, handle):
        self._check("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(used=handle["used"], total=handle["total"], free=handle["total"] - handle["used"])

    def nvmlDeviceGetUtilizationRates(self, handle):
        self._check("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=handle["util"], memory=0)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        self._check("nvmlDeviceGetTemperature")
        assert sensor == self.NVML_TEMPERATURE_GPU
        return handle["temp"]

    def nvmlDeviceGetPowerUsage(self, handle):
        self._check("nvmlDeviceGetPowerUsage")
        return handle["power"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):
        self._check("nvmlDeviceGetEnforcedPowerLimit")
        if handle["limit"] is None:
            raise NVMLError_NotSupported()
        return handle["limit"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        self._check("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in handle["processes"]]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        self._check("nvmlDeviceGetGraphicsRunningProcesses")
        return []


def install(monkeypatch, fake: FakeNvml) -> FakeNvml:
    monkeypatch.setattr(nvml, "pynvml", fake)
    # A fresh process as far as NVML is concerned; the previous state comes back after the test.
    for name, fresh in (("_initialised_in", None), ("_absent", False), ("init_calls", 0)):
        monkeypatch.setattr(nvml, name, fresh)
    return fake
