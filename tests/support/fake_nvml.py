"""A stand-in for pynvml (the hardware is the one thing CI does not have).

Same function names and exception classes as the ones glmadmin/lib/nvml.py
uses; install it with `install(monkeypatch, FakeNvml(...))`. GPUs are plain
dicts, so a test states exactly what the "driver" reports.
"""

import threading
from types import SimpleNamespace

from glmadmin.lib import nvml

XID_CRITICAL = 0x8  # nvmlEventTypeXidCriticalError


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


class NVMLError_Timeout(NVMLError):
    pass


class NVMLError_InvalidArgument(NVMLError):
    pass


def gpu(index=0, used=2 * 2**30, total=80 * 2**30, util=37, temp=54, power_mw=210_000, limit_mw=700_000,
        processes=(), name="NVIDIA H100 80GB HBM3", **health):
    """processes: (pid, used bytes or None) pairs.

    The health signals are those of a healthy H100 unless given (None: the GPU does not support it):
    ecc_uncorrected, ecc_corrected, remap [corrected rows, uncorrected rows, pending, failed], retired (pages
    by cause: [single-bit, double-bit], None on GPUs that remap rows instead), retired_pending, clocks (the
    clock event reason bitmask), pcie_width, pcie_width_max, pcie_gen, pcie_gen_max, replays, nvlink ({link:
    {"active": bool, "errors": {counter: n}}}, None without NVLink), xid (whether Xid events can be
    registered), lost (True: every call for this GPU fails with GPU-is-lost).
    """
    signals = {"ecc_uncorrected": 0, "ecc_corrected": 0, "remap": [0, 0, 0, 0], "retired": None,
               "retired_pending": None, "clocks": 0, "pcie_width": 16, "pcie_width_max": 16, "pcie_gen": 5,
               "pcie_gen_max": 5, "replays": 0, "nvlink": None, "xid": True, "lost": False}
    unknown = set(health) - set(signals)
    assert not unknown, f"unknown health signal(s) {unknown}"
    return {"uuid": f"GPU-fake-{index}", "name": name, "used": used, "total": total, "util": util, "temp": temp,
            "power": power_mw, "limit": limit_mw, "processes": list(processes), **signals, **health}


def nvlink(links=4, **errors):
    """Active NVLink links, each with the error counters given (replay=, recovery=, crc_flit=, crc_data=)."""
    counters = {"replay": 0, "recovery": 1, "crc_flit": 2, "crc_data": 3}
    return {link: {"active": True, "errors": {counters[name]: n for name, n in errors.items()}}
            for link in range(links)}


class FakeNvml:
    NVML_TEMPERATURE_GPU = 0
    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVML_NVLINK_MAX_LINKS = 18

    def __init__(self, gpus=(), init_error: Exception | None = None):
        self.gpus = list(gpus)
        self.init_error = init_error
        self.init_count = 0
        self.failing: dict[str, Exception] = {}  # function name -> exception it raises
        self._events = threading.Condition()
        self._event_sets: list[dict] = []  # each: {"gpus": set of indices, "queue": [...]}
        self.waiting = 0  # threads blocked in nvmlEventSetWait now

    # --- injecting health signals -----------------------------------------------------------------------

    def xid(self, index: int, code: int) -> None:
        """The driver reports Xid `code` on GPU `index`: every event set registered for it receives it."""
        with self._events:
            for event_set in self._event_sets:
                if index in event_set["gpus"]:
                    event_set["queue"].append(SimpleNamespace(device=self.gpus[index], eventType=XID_CRITICAL,
                                                              eventData=code, gpuInstanceId=0, computeInstanceId=0))
            self._events.notify_all()

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
        if handle.get("lost"):
            raise NVMLError_GpuIsLost("GPU is lost")
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

    # --- health ------------------------------------------------------------------------------------------

    def _signal(self, name, handle, key):
        self._check(name)
        if handle["lost"]:
            raise NVMLError_GpuIsLost("GPU is lost")
        if handle[key] is None:
            raise NVMLError_NotSupported("Not Supported")
        return handle[key]

    def nvmlDeviceGetIndex(self, handle):
        self._check("nvmlDeviceGetIndex")
        return next(i for i, g in enumerate(self.gpus) if g is handle)

    def nvmlDeviceGetTotalEccErrors(self, handle, error_type, counter_type):
        assert counter_type == 0, "glmadmin reads the volatile counters"
        return self._signal("nvmlDeviceGetTotalEccErrors", handle,
                            "ecc_uncorrected" if error_type == 1 else "ecc_corrected")

    def nvmlDeviceGetRemappedRows(self, handle):
        return tuple(self._signal("nvmlDeviceGetRemappedRows", handle, "remap"))

    def nvmlDeviceGetRetiredPages(self, handle, cause):
        return list(self._signal("nvmlDeviceGetRetiredPages", handle, "retired")[cause])

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle):
        return int(self._signal("nvmlDeviceGetRetiredPagesPendingStatus", handle, "retired_pending"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self._signal("nvmlDeviceGetCurrentClocksEventReasons", handle, "clocks")

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle):
        return self._signal("nvmlDeviceGetCurrPcieLinkWidth", handle, "pcie_width")

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle):
        return self._signal("nvmlDeviceGetMaxPcieLinkWidth", handle, "pcie_width_max")

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle):
        return self._signal("nvmlDeviceGetCurrPcieLinkGeneration", handle, "pcie_gen")

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle):
        return self._signal("nvmlDeviceGetMaxPcieLinkGeneration", handle, "pcie_gen_max")

    def nvmlDeviceGetPcieReplayCounter(self, handle):
        return self._signal("nvmlDeviceGetPcieReplayCounter", handle, "replays")

    def nvmlDeviceGetNvLinkState(self, handle, link):
        links = self._signal("nvmlDeviceGetNvLinkState", handle, "nvlink")
        if link >= self.NVML_NVLINK_MAX_LINKS:
            raise NVMLError_InvalidArgument("Invalid Argument")
        if link not in links:
            raise NVMLError_NotSupported("Not Supported")
        return 1 if links[link]["active"] else 0

    def nvmlDeviceGetNvLinkErrorCounter(self, handle, link, counter):
        links = self._signal("nvmlDeviceGetNvLinkErrorCounter", handle, "nvlink")
        return links[link]["errors"].get(counter, 0)

    # --- events ------------------------------------------------------------------------------------------

    def nvmlEventSetCreate(self):
        self._check("nvmlEventSetCreate")
        event_set = {"gpus": set(), "queue": []}
        with self._events:
            self._event_sets.append(event_set)
        return event_set

    def nvmlDeviceGetSupportedEventTypes(self, handle):
        self._check("nvmlDeviceGetSupportedEventTypes")
        if handle["lost"]:
            raise NVMLError_GpuIsLost("GPU is lost")
        return XID_CRITICAL | 0x2 if handle["xid"] else 0

    def nvmlDeviceRegisterEvents(self, handle, types, event_set):
        self._check("nvmlDeviceRegisterEvents")
        if not handle["xid"]:
            raise NVMLError_NotSupported("Not Supported")
        with self._events:
            event_set["gpus"].add(self.nvmlDeviceGetIndex(handle))

    def nvmlEventSetWait_v2(self, event_set, timeout_ms):
        self._check("nvmlEventSetWait_v2")
        with self._events:
            self.waiting += 1
            try:
                if not self._events.wait_for(lambda: event_set["queue"], timeout_ms / 1000):
                    raise NVMLError_Timeout("Timeout")
                return event_set["queue"].pop(0)
            finally:
                self.waiting -= 1

    def nvmlEventSetFree(self, event_set):
        with self._events:
            if event_set in self._event_sets:
                self._event_sets.remove(event_set)


def install(monkeypatch, fake: FakeNvml) -> FakeNvml:
    monkeypatch.setattr(nvml, "pynvml", fake)
    # A fresh process as far as NVML is concerned; the previous state comes back after the test.
    for name, fresh in (("_initialised_in", None), ("_absent", False), ("init_calls", 0)):
        monkeypatch.setattr(nvml, name, fresh)
    return fake
