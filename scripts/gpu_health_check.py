"""The GPU health check on a real GPU (issue 19): every signal read through glmadmin's own code, what each
returns (or "not supported"), the verdict, the cost of one full health read per GPU, and the Xid event wait
idling. Runs on a bare GPU box with only pynvml (nvidia-ml-py): glmadmin's package __init__ (Celery) is not
loaded, only the model-free modules.

    python3 scripts/gpu_health_check.py [--cycles 200] [--wait-seconds 12]
"""

import argparse
import json
import resource
import statistics
import sys
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_modules():
    """glmadmin.lib.nvml and monitoring.telemetry.gpu_health / gpu_verdict without Django or Celery."""
    sys.path.insert(0, str(ROOT))
    package = types.ModuleType("glmadmin")
    package.__path__ = [str(ROOT / "glmadmin")]  # the package without its __init__ (which loads Celery)
    sys.modules["glmadmin"] = package
    from glmadmin.lib import nvml
    from monitoring.telemetry import gpu_health, gpu_verdict

    return nvml, gpu_health, gpu_verdict


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_health(gpu_health, count: int, cycles: int) -> dict:
    """One full health read (every signal) per GPU per cycle, after the first (which also reads the NVLink links
    and counters, again once every gpu_health.NVLINK_REFRESH seconds)."""
    started = time.perf_counter()
    for index in range(count):
        gpu_health.read_gpu(index)
    first_ms = (time.perf_counter() - started) * 1000
    per_gpu = []
    for _ in range(cycles):
        for index in range(count):
            t0 = time.perf_counter()
            gpu_health.read_gpu(index)
            per_gpu.append((time.perf_counter() - t0) * 1000)
    per_gpu.sort()
    return {"first_cycle_ms_all_gpus": round(first_ms, 3), "reads": len(per_gpu),
            "per_gpu_ms_median": round(statistics.median(per_gpu), 3),
            "per_gpu_ms_p95": round(per_gpu[int(0.95 * len(per_gpu))], 3),
            "per_gpu_ms_max": round(per_gpu[-1], 3), "goal_per_gpu_ms": 1.0}


def xid_idle(gpu_health, seconds: float) -> dict:
    """The listener's loop (gpu_health.listen, 5 s waits) for `seconds`: its CPU time while nothing happens."""
    watcher = gpu_health.XidWatcher()
    registered, unsupported = watcher.registered, watcher.unsupported
    t0 = time.perf_counter()
    timed_out = watcher.wait(200)
    single_wait_ms = (time.perf_counter() - t0) * 1000
    watcher.close()
    events, stop = [], threading.Event()
    before, started = cpu_seconds(), time.perf_counter()
    thread = threading.Thread(target=gpu_health.listen, args=(events.append, stop, 5000))
    thread.start()
    time.sleep(seconds)  # the measured interval: the listener waits in the driver meanwhile
    stop.set()
    thread.join(10)
    elapsed = time.perf_counter() - started
    used = cpu_seconds() - before
    return {"registered_gpus": registered, "unsupported_gpus": unsupported,
            "wait_200ms_returned": repr(timed_out), "wait_200ms_took_ms": round(single_wait_ms, 1),
            "listen_seconds": round(elapsed, 1), "listen_cpu_seconds": round(used, 4),
            "listen_cpu_percent_of_one_core": round(100 * used / elapsed, 3), "events": [vars(e) for e in events]}


RAW = [  # (pynvml function, extra arguments): each called once per GPU, its answer or its exception's name
    ("nvmlDeviceGetTotalEccErrors", (1, 0)), ("nvmlDeviceGetTotalEccErrors", (0, 0)),
    ("nvmlDeviceGetRemappedRows", ()), ("nvmlDeviceGetRetiredPages", (0,)), ("nvmlDeviceGetRetiredPages", (1,)),
    ("nvmlDeviceGetRetiredPagesPendingStatus", ()), ("nvmlDeviceGetCurrentClocksEventReasons", ()),
    ("nvmlDeviceGetCurrPcieLinkWidth", ()), ("nvmlDeviceGetMaxPcieLinkWidth", ()),
    ("nvmlDeviceGetCurrPcieLinkGeneration", ()), ("nvmlDeviceGetMaxPcieLinkGeneration", ()),
    ("nvmlDeviceGetGpuMaxPcieLinkGeneration", ()), ("nvmlDeviceGetPcieReplayCounter", ()),
    ("nvmlDeviceGetNvLinkState", (0,)), ("nvmlDeviceGetNvLinkState", (17,)), ("nvmlDeviceGetNvLinkState", (18,)),
    ("nvmlDeviceGetNvLinkErrorCounter", (0, 0)), ("nvmlDeviceGetNvLinkErrorCounter", (0, 2)),
    ("nvmlDeviceGetSupportedEventTypes", ()),
]


def raw_probe(lib, index: int) -> None:
    handle = lib.nvmlDeviceGetHandleByIndex(index)
    for name, extra in RAW:
        try:
            answer = repr(getattr(lib, name)(handle, *extra))[:120]
        except Exception as exc:  # noqa: BLE001 - the point is to see which error each query gives
            answer = f"{type(exc).__name__}: {exc}"
        print(f"   raw {name}{extra}: {answer}")


def profile(lib, gpu_health, count: int, reps: int = 50) -> None:
    """Where a health read's time goes: each NVML query alone, and the NVLink counters both ways."""
    handle = lib.nvmlDeviceGetHandleByIndex(0)
    calls = [(name, extra) for name, extra in RAW if not name.startswith("nvmlDeviceGetNvLinkState")]
    calls += [("nvmlDeviceGetNvLinkState", (0,)),
              ("nvmlDeviceGetFieldValues", ([52, 59, 38, 45],))]
    for name, extra in calls:
        t0 = time.perf_counter()
        for _ in range(reps):
            try:
                getattr(lib, name)(handle, *extra)
            except Exception:  # noqa: BLE001 - unsupported queries cost time too
                pass
        print(f"   {name}{str(extra)[:40]}: {(time.perf_counter() - t0) * 1000 / reps:.3f} ms")
    print("   NVLink field totals (NVML_FI_DEV_NVLINK_*_ERROR_COUNT_TOTAL), nvmlReturn per field:",
          [v.nvmlReturn for v in lib.nvmlDeviceGetFieldValues(handle, [52, 59, 38, 45])])
    gpu_health._nvlink.clear()  # noqa: SLF001 - time one NVLink refresh (links and counters) alone
    t0 = time.perf_counter()
    gpu_health.read_gpu(0)
    print(f"   a read with the NVLink refresh: {(time.perf_counter() - t0) * 1000:.3f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--wait-seconds", type=float, default=12)
    parser.add_argument("--profile", action="store_true", help="time each NVML query alone")
    args = parser.parse_args()
    nvml, gpu_health, gpu_verdict = load_modules()
    snapshot = nvml.read()
    print(f"driver {nvml.driver_version()}, {len(snapshot.gpus)} GPU(s), status {snapshot.status!r}")
    if snapshot.status:
        return
    healths = gpu_health.read_all(len(snapshot.gpus))
    for gpu, health in zip(snapshot.gpus, healths, strict=True):
        print(f"\n== GPU {gpu.index} {gpu.name} (util {gpu.utilization} %)")
        for field, value in vars(health).items():
            print(f"   {field:<16} {'not supported' if value is None else value}")
        print(f"   clock reasons    {health.clock_reasons}")
        for name, shown in gpu_verdict.signals(health).items():
            print(f"   [{name}] {shown}")
        raw_probe(nvml.pynvml, gpu.index)
        state, findings = gpu_verdict.assess(health, [], gpu_verdict.Rates(), gpu_verdict.Limits(), gpu.utilization)
        print(f"   state: {state}")
        for finding in findings:
            print(f"   finding: {finding.signal} {finding.state}: {finding.detail} -> {finding.action}")
    if args.profile:
        print("\n== profile (GPU 0, ms per call)")
        profile(nvml.pynvml, gpu_health, len(snapshot.gpus))
    timing = time_health(gpu_health, len(snapshot.gpus), args.cycles)
    print("\n== one full health read per GPU:", json.dumps(timing))
    t0 = time.perf_counter()
    for _ in range(args.cycles):
        nvml.read()
    print(f"== for comparison, glmadmin's existing NVML cycle (all GPUs): "
          f"{(time.perf_counter() - t0) * 1000 / args.cycles:.3f} ms")
    print("== Xid listener idle:", json.dumps(xid_idle(gpu_health, args.wait_seconds)))


if __name__ == "__main__":
    main()
