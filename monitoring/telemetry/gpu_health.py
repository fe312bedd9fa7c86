"""GPU health signals read through NVML: Xid events, ECC, row remapping, retired pages, clock event reasons,
PCIe link and replays, NVLink errors, and whether the GPU answers at all.

Model-free (only glmadmin.lib.nvml and pynvml), so the real-GPU check can run it on a bare GPU box. Every
value a GPU or driver does not offer is None ("not supported"), never 0: a consumer card without ECC has
no ECC errors to count, which is not the same as none counted. The judgement (ok / degraded / failing and
what to do) is gpu_verdict's; this module only reads.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from glmadmin.lib import nvml

# Clock event ("throttle") reasons that mean the hardware itself slows the GPU down.
CLOCK_EVENTS = {  # NVML bit -> name shown to operators
    0x08: "hw slowdown",
    0x20: "sw thermal slowdown",
    0x40: "hw thermal slowdown",
    0x80: "hw power brake",
}
# NVML_NVLINK_ERROR_DL_*: replays (a flit sent again) and recoveries (the link retrained). The CRC counters
# are not read: on a healthy, idle pair of H200s the data-CRC counter grew by ~300 a minute (docs/gpu-check.md),
# and every counter costs ~1 ms per link and call there.
NVLINK_COUNTERS = {0: "replay", 1: "recovery"}
# Seconds between two reads of the NVLink links and their counters: ~1 ms per link and counter on an H200
# (36 ms for 18 links), against ~0.25 ms for every other signal together, so not every cycle.
NVLINK_REFRESH = 60.0
XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError


@dataclass(frozen=True)
class GpuHealth:
    """What NVML says about one GPU's health now. None: not supported by this GPU or driver."""

    index: int
    answering: bool = True
    error: str = ""  # why NVML did not answer for this GPU ("" when it did)
    ecc_uncorrected: int | None = None  # volatile (since the last driver load / reset), all memory
    ecc_corrected: int | None = None
    remapped_rows: int | None = None  # rows remapped so far (correctable + uncorrectable causes)
    remap_pending: bool | None = None  # a remap waits for a GPU reset to take effect
    remap_failed: bool | None = None  # a remap could not be made: the bank has no spare rows left
    retired_pages: int | None = None  # pages retired (single-bit storms + double-bit), pre-Ampere GPUs
    retired_pending: bool | None = None  # a retirement waits for the next driver load
    clock_events: int | None = None  # NVML's clock event reason bitmask
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    pcie_gen: int | None = None
    pcie_gen_max: int | None = None
    pcie_replays: int | None = None  # a counter since the driver loaded
    nvlink_links: int | None = None  # active links; None: no NVLink on this GPU
    nvlink_errors: dict | None = None  # counter name -> total over the active links
    nvlink_read_at: float | None = None  # epoch seconds of that reading (kept for NVLINK_REFRESH seconds)

    @property
    def clock_reasons(self) -> list[str]:
        if self.clock_events is None:
            return []
        return [name for bit, name in CLOCK_EVENTS.items() if self.clock_events & bit]


# Errors that say the GPU itself no longer answers (Xid 79 shows as "GPU is lost" or "Unknown Error").
GONE = {"NVMLError_GpuIsLost", "NVMLError_GpuRequiresReset", "NVMLError_Unknown", "NVMLError_Timeout",
        "NVMLError_Uninitialized", "NVMLError_DriverNotLoaded"}
log = logging.getLogger(__name__)


def _pynvml():
    # Looked up on each call: tests install a fake library into glmadmin.lib.nvml.
    return nvml.pynvml


def _supported(read: Callable):
    """read()'s value; None when this GPU or driver does not offer it (or withholds it from this user)."""
    lib = _pynvml()
    try:
        return read()
    except (lib.NVMLError_NotSupported, lib.NVMLError_NoPermission):
        return None
    except lib.NVMLError as exc:
        if type(exc).__name__ in GONE:
            raise
        # Any other error of one query ("function not found", "invalid argument" on drivers that do not offer
        # it, a binding/driver mismatch) costs that signal only: a GPU is not failing for it.
        log.debug("NVML query failed: %s", exc)
        return None


_nvlink: dict[int, tuple[float, tuple]] = {}  # GPU index -> (monotonic time read, (links, errors, read at))


def _nvlink_reading(lib, index: int, handle) -> tuple[int | None, dict | None, float | None]:
    """(active links, error totals, when read); the last reading again within NVLINK_REFRESH seconds."""
    read, cached = _nvlink.get(index, (None, None))
    now = time.monotonic()
    if read is not None and now - read < NVLINK_REFRESH:
        return cached
    links = _active_links(lib, handle)
    errors = None if links is None else _nvlink_errors(lib, handle, links)
    _nvlink[index] = (now, reading := (None if links is None else len(links), errors,
                                       None if links is None else time.time()))
    return reading


def _active_links(lib, handle) -> tuple[int, ...] | None:
    """The links that are up; None when the GPU has no NVLink."""
    active, any_supported = [], False
    for link in range(getattr(lib, "NVML_NVLINK_MAX_LINKS", 18)):
        try:
            state = lib.nvmlDeviceGetNvLinkState(handle, link)
        except (lib.NVMLError_NotSupported, lib.NVMLError_NoPermission):
            continue
        except lib.NVMLError as exc:
            if type(exc).__name__ in GONE:
                raise
            break  # "invalid argument": past this GPU's last link (or a query this driver does not offer)
        any_supported = True
        if state:
            active.append(link)
    return tuple(active) if any_supported else None


def _nvlink_errors(lib, handle, links: tuple[int, ...]) -> dict | None:
    """Each counter summed over the active links; None when the driver has none of them."""
    totals: dict[str, int] = {}
    for link in links:
        for counter, name in NVLINK_COUNTERS.items():
            value = _supported(lambda link=link, counter=counter: lib.nvmlDeviceGetNvLinkErrorCounter(
                handle, link, counter))
            if value is not None:
                totals[name] = totals.get(name, 0) + int(value)
    return totals if totals or not links else None


def _clock_events(lib, handle) -> int | None:
    # The newer name first; drivers and bindings before 12.x only have the "throttle" one.
    getter = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        lib.nvmlDeviceGetCurrentClocksThrottleReasons
    value = _supported(lambda: getter(handle))
    return None if value is None else int(value)


def _retired(lib, handle) -> tuple[int | None, bool | None]:
    counts = []
    for cause in (0, 1):  # multiple single-bit errors, double-bit error
        pages = _supported(lambda cause=cause: lib.nvmlDeviceGetRetiredPages(handle, cause))
        if pages is None:
            return None, None
        counts.append(len(pages))
    pending = _supported(lambda: lib.nvmlDeviceGetRetiredPagesPendingStatus(handle))
    return sum(counts), None if pending is None else bool(pending)


def read_gpu(index: int) -> GpuHealth:
    """Every signal of GPU `index`. A GPU that does not answer is a reading too (answering=False)."""
    lib = _pynvml()
    try:
        handle = lib.nvmlDeviceGetHandleByIndex(index)
        ecc_unc = _supported(lambda: lib.nvmlDeviceGetTotalEccErrors(handle, 1, 0))  # uncorrected, volatile
        ecc_cor = _supported(lambda: lib.nvmlDeviceGetTotalEccErrors(handle, 0, 0))
        remap = _supported(lambda: lib.nvmlDeviceGetRemappedRows(handle))
        retired, retired_pending = _retired(lib, handle)
        width = _supported(lambda: lib.nvmlDeviceGetCurrPcieLinkWidth(handle))
        width_max = _supported(lambda: lib.nvmlDeviceGetMaxPcieLinkWidth(handle))
        gen = _supported(lambda: lib.nvmlDeviceGetCurrPcieLinkGeneration(handle))
        gen_max = _supported(lambda: lib.nvmlDeviceGetMaxPcieLinkGeneration(handle))
        replays = _supported(lambda: lib.nvmlDeviceGetPcieReplayCounter(handle))
        links, nvlink_errors, nvlink_at = _nvlink_reading(lib, index, handle)
        clocks = _clock_events(lib, handle)
    except lib.NVMLError as exc:
        return GpuHealth(index=index, answering=False, error=f"{type(exc).__name__}: {exc}"[:200])
    corr_rows, unc_rows, pending, failed = remap if remap is not None else (None, None, None, None)
    return GpuHealth(
        index=index, ecc_uncorrected=_int(ecc_unc), ecc_corrected=_int(ecc_cor),
        remapped_rows=None if remap is None else int(corr_rows) + int(unc_rows),
        remap_pending=None if remap is None else bool(pending), remap_failed=None if remap is None else bool(failed),
        retired_pages=retired, retired_pending=retired_pending, clock_events=clocks,
        pcie_width=_int(width), pcie_width_max=_int(width_max), pcie_gen=_int(gen), pcie_gen_max=_int(gen_max),
        pcie_replays=_int(replays), nvlink_links=links, nvlink_errors=nvlink_errors, nvlink_read_at=nvlink_at)


def read_all(count: int | None = None) -> tuple[GpuHealth, ...]:
    """Every GPU's health; () without NVIDIA GPUs. Raises nvml.NvmlError when NVML cannot even count them."""
    if not nvml._ensure_init():  # noqa: SLF001 - the wrapper's one initialisation per process
        return ()
    lib = _pynvml()
    if count is None:
        try:
            count = lib.nvmlDeviceGetCount()
        except lib.NVMLError as exc:
            raise nvml.NvmlError(f"NVML error: {exc}") from exc
    return tuple(read_gpu(index) for index in range(count))


def _int(value) -> int | None:
    return None if value is None else int(value)


# --- Xid events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XidEvent:
    index: int  # the GPU
    code: int  # the Xid
    at: float  # epoch seconds, when the wait returned it


class XidWatcher:
    """An NVML event set registered for Xid (critical error) events on every GPU that offers them.

    wait() blocks in the driver (ctypes releases the GIL) for at most its timeout: no busy loop.
    """

    def __init__(self):
        lib = _pynvml()
        self.lib = lib
        self.event_set = lib.nvmlEventSetCreate()
        self.registered: list[int] = []
        self.unsupported: list[int] = []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            supported = _supported(lambda handle=handle: lib.nvmlDeviceGetSupportedEventTypes(handle))
            if not supported or not supported & XID_EVENT:
                self.unsupported.append(index)
                continue
            try:
                lib.nvmlDeviceRegisterEvents(handle, XID_EVENT, self.event_set)
            except (lib.NVMLError_NotSupported, lib.NVMLError_NoPermission):
                self.unsupported.append(index)
                continue
            self.registered.append(index)

    def wait(self, timeout_ms: int) -> XidEvent | None:
        """The next Xid, or None when none came within the timeout."""
        lib = self.lib
        wait = getattr(lib, "nvmlEventSetWait_v2", None) or lib.nvmlEventSetWait
        try:
            data = wait(self.event_set, timeout_ms)
        except lib.NVMLError_Timeout:
            return None
        if not data.eventType & XID_EVENT:
            return None
        try:
            index = lib.nvmlDeviceGetIndex(data.device)
        except lib.NVMLError:
            index = -1  # the GPU that raised it no longer answers (Xid 79): the event still counts
        return XidEvent(index=int(index), code=int(data.eventData), at=time.time())

    def close(self) -> None:
        try:
            self.lib.nvmlEventSetFree(self.event_set)
        except self.lib.NVMLError:
            pass


def listen(sink: Callable[[XidEvent], None], stop: threading.Event, timeout_ms: int = 5000,
           still_wanted: Callable[[], bool] = lambda: True) -> None:
    """Hand every Xid to `sink` until `stop` is set or still_wanted() says no (checked after each wait)."""
    watcher = XidWatcher()
    try:
        while not stop.is_set() and still_wanted():
            event = watcher.wait(timeout_ms)
            if event is not None:
                sink(event)
    finally:
        watcher.close()
