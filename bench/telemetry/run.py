"""Telemetry's cost: CPU and memory of glmadmin's own processes while idle and while sampling engines.

Starts the real stack as scripts/run does (uvicorn web, a Celery worker with
its prefork children, Celery beat; a private Redis and SQLite on a scratch
data directory) and measures, side by side in the same run, an idle Python
interpreter as the reference. Phases: no engine, then 1 and 8 engines sampled
every 10 s. The engines are small local HTTP servers answering /health, the
supervisor's one-token probe and /metrics with a vLLM answer captured from the
real CPU engine (tests/support/fixtures/vllm_metrics.txt, counters growing): 8 real vLLM
engines do not fit this 2-core machine, and an engine's own CPU is not
glmadmin's cost anyway. The supervisor runs against them as against real ones.

    .venv/bin/python bench/telemetry/run.py [--seconds 120] [--engines 0,1,8]
    .venv/bin/python bench/telemetry/run.py --nvml-cycle [--cycles 200]   # on a GPU machine

Goals: idle <= 2 % of one core and <= 400 MB RSS (web + worker + beat); one NVML cycle <= 5 ms per GPU;
one full GPU health read (issue 19: Xid registration aside, every signal) <= 1 ms per GPU.
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


def stack_phases(seconds: float, counts: tuple[int, ...] = (0, 1, 8)) -> dict:
    from bench.common import PY, Scratch

    scratch = Scratch("bench-telemetry")
    from django.utils import timezone

    from inference.models import Engine, EngineState
    from monitoring.models import HostSample

    env = dict(scratch.env, GLMADMIN_HOST_NAME="local")
    spawned: dict[str, subprocess.Popen] = {}

    def spawn(name, *cmd):
        log = open(scratch.dir / f"{name}.log", "w")
        spawned[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        return spawned[name]

    reference = subprocess.Popen([PY, "-c", "import time\nwhile True: time.sleep(3600)"])
    responders = []
    try:
        port = free_port()
        spawn("web", str(ROOT / ".venv/bin/uvicorn"), "glmadmin.asgi:application", "--host", "127.0.0.1", "--port",
              str(port), "--no-access-log")
        spawn("worker", str(ROOT / ".venv/bin/celery"), "-A", "glmadmin", "worker", "--loglevel", "WARNING",
              "--concurrency", "2", "-Q", "celery,engines.local")
        spawn("beat", str(ROOT / ".venv/bin/celery"), "-A", "glmadmin", "beat", "--loglevel", "WARNING")
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
            time.sleep(12)  # one cycle with the new engines before measuring
            result = measure(groups, seconds)
            ours = [v for k, v in result.items() if not k.startswith("reference")]
            result["total (web + worker + beat)"] = {
                "cpu_percent_of_one_core": round(sum(v["cpu_percent_of_one_core"] for v in ours), 2),
                "rss_mb": round(sum(v["rss_mb"] for v in ours), 1),
                "pss_mb": round(sum(v["pss_mb"] for v in ours), 1)}
            result["one sampling cycle in-process (ms, median of 5)"] = cycle_ms()
            states = list(Engine.objects.values_list("state", flat=True))
            result["engines"] = {"count": count, "states at end": states}
            phases[f"{count} engine(s)"] = result
            print(f"{count} engine(s): {json.dumps(result['total (web + worker + beat)'])}"
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
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    if args.nvml_cycle:
        result = {"mode": "nvml-cycle", **nvml_cycle(args.cycles)}
        out = RESULTS / f"telemetry-nvml-{stamp}.json"
    else:
        out = RESULTS / f"telemetry-cost-{stamp}.json"
        result = {"mode": "platform cost", "seconds_per_phase": args.seconds, "interval_s": 10,
                  "engines_note": "engines are local HTTP responders serving a captured vLLM /metrics "
                                  "(8 real CPU engines do not fit this machine)",
                  "cpu_count": psutil.cpu_count(), "goals": {"cpu_percent": GOAL_CPU, "rss_mb": GOAL_RSS_MB},
                  "phases": stack_phases(args.seconds, tuple(int(n) for n in args.engines.split(",")))}
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
