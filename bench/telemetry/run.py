"""Telemetry's cost: CPU and memory of glmadmin's own processes while idle and while sampling engines.

Starts the real stack as scripts/run does (every Procfile process but Redis:
uvicorn web, the Celery worker, alerts and notify lanes with their prefork
children, Celery beat; a private Redis and SQLite on a scratch data directory)
and measures, side by side in the same run, an idle Python interpreter as the
reference. Phases: no engine, then 1 and 8 engines sampled every 10 s; in each,
the quick disk checks (of /, watched by default) at each setting of --quick.
The engines are small local HTTP servers answering /health, the supervisor's
one-token probe and /metrics with a vLLM answer captured from the real CPU
engine (tests/support/fixtures/vllm_metrics.txt, counters growing): 8 real vLLM
engines do not fit this 2-core machine, and an engine's own CPU is not
glmadmin's cost anyway. The supervisor runs against them as against real ones.

    .venv/bin/python bench/telemetry/run.py [--seconds 120] [--engines 0,1,8] [--quick 0,1]
    .venv/bin/python bench/telemetry/run.py --nvml-cycle [--cycles 200]   # on a GPU machine

Goals: idle <= 2 % of one core and <= 400 MB RSS (the whole stack; before the
lanes: web + worker + beat); one NVML cycle <= 5 ms per GPU; one full GPU
health read (issue 19: Xid registration aside, every signal) <= 1 ms per GPU.
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
CAPTURED = ROOT / "tests" / "support" / "fixtures" / "vllm_metrics.txt"
GOAL_CPU, GOAL_RSS_MB, GOAL_NVML_MS = 2.0, 400, 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def usage(procs: list[psutil.Process]) -> tuple[float, int, int]:
    """CPU seconds used so far, resident memory and proportional memory (PSS) now, over the processes
    and their children. RSS counts the pages Celery's forked children share with their parent once per
    process; PSS splits them, so its sum is what the processes really cost the machine."""
    cpu, rss, pss = 0.0, 0, 0
    for top in procs:
        for p in tree(top):
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                memory = p.memory_full_info()
                rss += memory.rss
                pss += memory.pss
            except psutil.Error:
                continue
    return cpu, rss, pss


def measure(groups: dict[str, list[psutil.Process]], seconds: float) -> dict:
    before = {name: usage(procs)[0] for name, procs in groups.items()}
    started = time.monotonic()
    time.sleep(seconds)  # the measured interval itself: the platform runs on its own schedule meanwhile
    elapsed = time.monotonic() - started
    out = {}
    for name, procs in groups.items():
        cpu, rss, pss = usage(procs)
        out[name] = {"cpu_percent_of_one_core": round(100 * (cpu - before[name]) / elapsed, 2),
                     "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)}
    return out


def stack_phases(seconds: float, counts: tuple[int, ...] = (0, 1, 8), quick: tuple[float, ...] = (1.0,)) -> dict:
    from bench.common import PY, Scratch, restart_celery_worker, spawn_procfile

    scratch = Scratch("bench-telemetry")
    from django.utils import timezone

    from inference.models import Engine, EngineState
    from monitoring.models import HostSample

    port = free_port()
    env = dict(scratch.env, GLMADMIN_HOST_NAME="local", GLMADMIN_HOST="127.0.0.1", GLMADMIN_PORT=str(port))
    reference = subprocess.Popen([PY, "-c", "import time\nwhile True: time.sleep(3600)"])
    responders = []
    spawned = {}
    try:
        # The whole stack as scripts/run starts it: web, the worker, alerts and notify lanes, beat.
        spawned = spawn_procfile(scratch, env)
        deadline = time.monotonic() + 120
        while HostSample.objects.count() < 2:  # the stack is up once the sampler has stored two cycles
            if time.monotonic() > deadline:
                raise SystemExit(f"no telemetry sampled in 120 s; logs in {scratch.dir}")
            time.sleep(1)
        groups = {name: [psutil.Process(p.pid)] for name, p in spawned.items()}
        groups["reference (idle python)"] = [psutil.Process(reference.pid)]
        phases = {}
        for count in counts:
            while len(responders) < count:
                rport = free_port()
                proc = subprocess.Popen([PY, str(Path(__file__).with_name("responder.py")), str(rport),
                                         str(CAPTURED)])
                responders.append(proc)
                time.sleep(0.5)  # let it bind before the supervisor looks at it
                Engine.objects.create(
                    name=f"bench-{len(responders)}", port=rport, model="/bench", served_model_name="bench",
                    state=EngineState.READY, pid=proc.pid, process_started_at=psutil.Process(proc.pid).create_time(),
                    ready_at=timezone.now(), state_changed_at=timezone.now())
            for every in quick:
                # The alerts worker with the quick disk checks every `every` seconds (0: off, the 10 s full check
                # alone, as before issue 16).
                restart_celery_worker(scratch, dict(env, GLMADMIN_DISK_CHECK_SECONDS=str(every)), spawned, "alerts")
                groups["alerts"] = [psutil.Process(spawned["alerts"].pid)]
                time.sleep(12)  # one sampling cycle with the new engines before measuring
                result = measure(groups, seconds)
                ours = {k: v for k, v in result.items() if not k.startswith("reference")}
                for label, names in (("total (whole stack)", list(ours)),
                                     ("total (web + worker + beat, as measured before the lanes)",
                                      ["web", "worker", "beat"])):
                    result[label] = {key: round(sum(ours[n][key] for n in names if n in ours), 2)
                                     for key in ("cpu_percent_of_one_core", "rss_mb", "pss_mb")}
                whole = result["total (whole stack)"]
                result["ratios to the goals"] = {"cpu": round(whole["cpu_percent_of_one_core"] / GOAL_CPU, 2),
                                                 "rss": round(whole["rss_mb"] / GOAL_RSS_MB, 2)}
                result["quick disk checks every (s, 0: off)"] = every
                result["one sampling cycle in-process (ms, median of 5)"] = cycle_ms()
                states = list(Engine.objects.values_list("state", flat=True))
                result["engines"] = {"count": count, "states at end": states}
                phases[f"{count} engine(s), quick disk checks every {every:g} s"] = result
                print(f"{count} engine(s), quick disk checks every {every:g} s: {json.dumps(whole)}"
                      f" reference {json.dumps(result['reference (idle python)'])}", flush=True)
        return phases
    finally:
        for proc in [*responders, reference, *spawned.values()]:
            proc.terminate()
        for proc in [*responders, reference, *spawned.values()]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        scratch.close()


def load_by_path(name: str, relative: str):
    """Import one model-free module without its package (whose __init__ loads Celery and Django):
    --nvml-cycle runs on a bare GPU box with only pynvml and psutil."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cycle_ms() -> float:
    """The sampler's own work for one cycle (NVML, process table, /metrics of every engine, host), without
    storing, run here in the benchmark process after the phase was measured. (It moves the start of the
    engines' windows in Redis, which changes the worker's next numbers, not its cost.)"""
    from monitoring.telemetry import sampler

    times = []
    for _ in range(5):
        started = time.perf_counter()
        sampler.take_cycle()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def nvml_cycle(cycles: int) -> dict:
    nvml = load_by_path("nvml", "glmadmin/lib/nvml.py")

    started = time.perf_counter()
    first = nvml.read()  # includes nvmlInit, paid once per process
    init_ms = (time.perf_counter() - started) * 1000
    if first.status:
        return {"status": first.status, "init_ms": round(init_ms, 2)}
    gpus = len(first.gpus)
    times = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        nvml.read()
        times.append((time.perf_counter() - t0) * 1000)
    attribution = []
    try:
        ProcessTable = load_by_path("process_table", "monitoring/telemetry/process_table.py").ProcessTable  # noqa: N806

        pids = [p.pid for g in first.gpus for p in g.processes]
        for _ in range(20):
            t0 = time.perf_counter()
            table = ProcessTable([])
            for pid in pids:
                table.engine_of(pid), table.name(pid)
            attribution.append((time.perf_counter() - t0) * 1000)
    except ImportError as exc:  # psutil missing on a bare GPU box: NVML alone is still measured
        attribution = [float("nan")]
        print(f"process attribution not measured: {exc}")
    per_gpu = [t / gpus for t in times]
    return {
        "gpus": gpus, "names": sorted({g.name for g in first.gpus}), "init_ms": round(init_ms, 2),
        "cycles": cycles, "nvml_init_calls": nvml.init_calls,
        "cycle_ms_median": round(statistics.median(times), 3),
        "cycle_ms_p95": round(sorted(times)[int(.95 * cycles)], 3),
        "per_gpu_ms_median": round(statistics.median(per_gpu), 3),
        "per_gpu_ms_p95": round(sorted(per_gpu)[int(.95 * cycles)], 3),
        "process_table_ms_median": round(statistics.median(attribution), 2),
        "goal_per_gpu_ms": GOAL_NVML_MS,
        # Issue 19: one full health read (every signal of gpu_health) per GPU, goal <= 1 ms.
        "health": health_cycle(cycles),
    }


def health_cycle(cycles: int) -> dict:
    check = load_by_path("gpu_health_check", "scripts/gpu_health_check.py")
    _, gpu_health, _ = check.load_modules()
    return check.time_health(gpu_health, len(gpu_health.read_all()), cycles)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="measured seconds per phase")
    parser.add_argument("--nvml-cycle", action="store_true", help="time GPU sampling cycles with the real pynvml")
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--engines", default="0,1,8", help="the phases: engine counts, comma-separated, rising")
    parser.add_argument("--quick", default="1", help="GLMADMIN_DISK_CHECK_SECONDS settings measured for each engine "
                                                     "count, comma-separated (e.g. 0,1: off as before issue 16, now)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.nvml_cycle:
        result = {"mode": "nvml-cycle", **nvml_cycle(args.cycles)}
        out = RESULTS / f"telemetry-nvml-{stamp}.json"
    else:
        out = RESULTS / f"telemetry-cost-{stamp}.json"
        result = {"mode": "platform cost", "seconds_per_phase": args.seconds, "sampling_interval_s": 10,
                  "engines_note": "engines are local HTTP responders serving a captured vLLM /metrics "
                                  "(8 real CPU engines do not fit this machine)",
                  "cpu_count": psutil.cpu_count(), "goals": {"cpu_percent": GOAL_CPU, "rss_mb": GOAL_RSS_MB},
                  "phases": stack_phases(args.seconds, tuple(int(n) for n in args.engines.split(",")),
                                         tuple(float(n) for n in args.quick.split(",")))}
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
