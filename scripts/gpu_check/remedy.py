"""The GPU-memory remedy ladder on a real engine with real NVML readings (issue 18), self-checking.

On a scratch glmadmin (SQLite, private Redis): start the engine with manage.py start_engine (soft restarts allowed,
so sleep mode and vLLM's development endpoints are on), then

1. one telemetry cycle through glmadmin's own sampler (NVML per process, the process table, the rules): the rules
   record the engine's post-start GPU memory (its baseline), compared here with this script's own NVML reading;
2. the condition made true on the real reading: the engine row's gpu_memory_utilization is lowered below what the
   running process holds (so it holds more than it reserved, as an engine that grew would), and the rule's
   threshold put below the GPU's real use (for 0 s); the next cycle raises the GPU-memory incident and queues the
   ladder in the engine's host queue;
3. the ladder runs: by a real Celery worker on the host queue (--worker, the default) or stepped here (--no-worker;
   the same remedy.advance the task runs), while this script steps the supervisor as the beat's reconcile loop
   would. Expected on the GPU: the prefix cache reset is done and does not cure (vLLM frees no GPU memory with
   it); the soft restart brings the memory back to its post-start baseline (said in its event) and does not cure
   either (the process holds what it held at the start, more than the lowered reservation); the full restart
   starts the process again with the lowered gpu_memory_utilization, which cures it;

and print each step as recorded in the incident's events (duration, cured or not), NVML per process before and
after each step, and the restart counts and durations on /metrics. Every expectation is checked; the exit status
is the number of failed checks (0: all held).

    python3 scripts/gpu_check/remedy.py --model DIR [--gpu-ids 0,1 --tp 2] [--gpu-memory-utilization 0.85]
    python3 scripts/gpu_check/remedy.py --cpu    # a dry run of the plumbing on vLLM's CPU build: no NVML and no
                                                # sleep mode there, so the ladder is the full restart alone

scripts/gpu_check/remedy_run.sh runs it on the lent GPU machine (see README.md beside this file).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import PY, Scratch  # noqa: E402
from bench.gateway.run import free_port  # noqa: E402
from scripts.gpu_check.checks import FAILED, check, stamp  # noqa: E402

ENGINE = "glm"
GIB = 1024**3


def run_command(scratch, t0, *args, timeout=900) -> int:
    started = time.time()
    print(f"{stamp(t0)} $ manage.py {' '.join(args)}", flush=True)
    proc = subprocess.Popen([PY, "manage.py", *args], cwd=ROOT, env=scratch.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print(f"    +{time.time() - started:6.2f}s | {line.rstrip()}", flush=True)
    rc = proc.wait(timeout=timeout)
    print(f"{stamp(t0)} exit {rc} after {time.time() - started:.2f} s", flush=True)
    return rc


def nvml_processes(gpus: list[int]) -> dict[int, dict[int, int]]:
    """This script's own NVML reading: GPU index -> {pid: bytes}; {} without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - the CPU dry run has no NVML
        print(f"  NVML not read: {exc}", flush=True)
        return {}
    out = {}
    for index in gpus:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        procs = {p.pid: p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        out[index] = {"used": memory.used, "total": memory.total, "processes": procs}
    return out


def show_nvml(t0, label: str, gpus: list[int]) -> dict:
    reading = nvml_processes(gpus)
    for index, gpu in reading.items():
        procs = ", ".join(f"pid {pid} {used / GIB:.1f} GiB" for pid, used in gpu["processes"].items()) or "none"
        print(f"{stamp(t0)} NVML {label}: GPU {index} {gpu['used'] / GIB:.1f} of {gpu['total'] / GIB:.1f} GiB "
              f"({100 * gpu['used'] / gpu['total']:.1f} %); {procs}", flush=True)
    return reading


def sample(t0) -> None:
    """One sampling cycle through glmadmin's own code, as the host's beat task runs it."""
    from inference.models import Engine
    from monitoring.telemetry import service

    names = {e.pk: e.name for e in Engine.objects.all()}
    cycle = service.sample()
    print(f"{stamp(t0)} sampling cycle: NVML status {cycle.gpu_status!r}", flush=True)
    for gpu in cycle.gpus:
        owners = ", ".join(f"pid {p.pid} {p.name} {(p.used_bytes or 0) / GIB:.1f} GiB -> "
                           f"{'engine ' + names.get(p.engine_id, '?') if p.engine_id else 'foreign'}"
                           for p in gpu.processes) or "none"
        print(f"    GPU {gpu.index}: {gpu.memory_used / GIB:.1f} of {gpu.memory_total / GIB:.1f} GiB "
              f"({gpu.memory_percent:.1f} %): {owners}", flush=True)


class Supervisor:
    """The beat's reconcile loop for this host, stepped from a thread (every RECONCILE_EVERY s in production;
    every second here, so a full restart is not slowed down by the pace of this script)."""

    def __init__(self):
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from django.db import close_old_connections

        from inference import supervisor

        while not self.stopping:
            try:
                supervisor.reconcile_host()
            except Exception as exc:  # noqa: BLE001 - reported, and tried again on the next round
                print(f"  reconcile failed: {type(exc).__name__}: {exc}", flush=True)
            finally:
                close_old_connections()
            time.sleep(1)


def queued_plans(host: str) -> list[dict]:
    import base64

    from django.conf import settings

    from glmadmin.lib import redis as rd
    from glmadmin.schedules import host_queue

    plans = []
    for raw in rd.client().lrange(f"{settings.REDIS_PREFIX}:celery:{host_queue(host)}", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "monitoring.tasks.remedy_engine":
            plans.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return plans


FINAL = re.compile(r"; cured: |no step left|not judged|not finished|not taken")


def ladder_events(source: str) -> list[str]:
    from alerts.models import IncidentEvent

    return list(IncidentEvent.objects.filter(incident__source=source, kind=IncidentEvent.Kind.ACTION)
                .order_by("pk").values_list("note", flat=True))


def run_ladder(t0, args, source: str, host: str, gpus: list[int]) -> list[str]:
    """Until the ladder's last event; prints each event as it is recorded, with NVML beside it."""
    from monitoring.telemetry import remedy

    deadline = time.time() + args.ladder_timeout
    seen = 0
    if not args.worker:
        plans = queued_plans(host)
        check(len(plans) == 1, f"one remedy run queued in the host queue (found {len(plans)})")
        plan, delay = (plans[0] if plans else None), 0
    while time.time() < deadline:
        if not args.worker and plan is not None:
            time.sleep(delay)  # the task's countdown
            plan, delay = remedy.advance(plan)
        else:
            time.sleep(0.5)
        events = ladder_events(source)
        for note in events[seen:]:
            print(f"{stamp(t0)} incident event: {note}", flush=True)
            show_nvml(t0, "now", gpus)
        seen = len(events)
        if events and FINAL.search(events[-1]):
            return events
        if not args.worker and plan is None:
            return events
    check(False, f"the ladder ended within {args.ladder_timeout} s")
    return ladder_events(source)


def start_worker(scratch, t0, out: str):
    from django.conf import settings

    from glmadmin.schedules import host_queue

    log = open(Path(out or scratch.dir) / "worker.log", "w")  # noqa: SIM115 - closed with the worker
    proc = subprocess.Popen([PY, "-m", "celery", "-A", "glmadmin", "worker", "--loglevel", "INFO", "--concurrency",
                             "2", "-n", "remedy@%h", "-Q", host_queue(settings.GLMADMIN_HOST_NAME)],
                            cwd=ROOT, env=scratch.env, stdout=log, stderr=subprocess.STDOUT)
    print(f"{stamp(t0)} Celery worker on {host_queue(settings.GLMADMIN_HOST_NAME)} (pid {proc.pid}; log "
          f"{log.name})", flush=True)
    return proc, log


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="model directory (the GLM-4.7-Flash-architecture checkpoint)")
    parser.add_argument("--cpu", action="store_true", help="dry run on vLLM's CPU build with the demo model")
    parser.add_argument("--gpu-ids", default="0,1")
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--lowered", type=float, default=0.6,
                        help="the gpu_memory_utilization the row is lowered to (what the full restart starts with)")
    parser.add_argument("--extra-args", default="--load-format dummy")
    parser.add_argument("--settle", type=int, default=5, help="GLMADMIN_REMEDY_SETTLE_SECONDS for this run")
    parser.add_argument("--worker", action=argparse.BooleanOptionalAction, default=True,
                        help="run the ladder in a real Celery worker on the host queue (default) or step it here")
    parser.add_argument("--start-timeout", type=int, default=400)
    parser.add_argument("--ladder-timeout", type=int, default=400)
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="where to copy the logs")
    args = parser.parse_args()
    os.environ["GLMADMIN_REMEDY_SETTLE_SECONDS"] = str(args.settle)  # read by the settings, here and the worker
    t0 = time.time()
    scratch = Scratch("remedy")
    print(f"{stamp(t0)} scratch glmadmin in {scratch.dir}", flush=True)
    from django.conf import settings

    from alerts.models import Incident
    from inference import options
    from inference.models import Engine
    from monitoring.models import TelemetryRules
    from monitoring.telemetry import exporter
    from monitoring.telemetry.rules.state import State

    if args.cpu:
        from inference import demo

        fields = {"model": str(scratch.demo_model()), "extra_args": demo.ENGINE_ARGS, "max_model_len": 2048,
                  "shutdown_timeout": 30}
        gpus = []
    else:
        gpus = [int(g) for g in args.gpu_ids.split(",")]
        fields = {"model": args.model, "gpu_ids": args.gpu_ids, "tensor_parallel_size": args.tp,
                  "max_model_len": args.max_model_len, "gpu_memory_utilization": args.gpu_memory_utilization,
                  "extra_args": args.extra_args.split(), "shutdown_timeout": 30}
    # Engine.objects.create, not full_clean: vLLM 0.24 on the GPU machine (../shared/gpu-vllm/README.md).
    engine = Engine.objects.create(name=ENGINE, port=free_port(), served_model_name=ENGINE, enforce_eager=True,
                                   soft_restart=True, **fields)
    print(f"{stamp(t0)} sleep mode available here: {options.sleep_mode_available()}; settle "
          f"{settings.REMEDY_SETTLE_SECONDS} s; engine row: {fields}", flush=True)
    worker = log = supervisor = None
    try:
        if run_command(scratch, t0, "start_engine", ENGINE, "--timeout", str(args.start_timeout)) != 0:
            raise SystemExit("start_engine failed")
        engine.refresh_from_db()
        host = engine.host
        print(f"{stamp(t0)} engine pid {engine.pid}, {engine.state}: {engine.state_reason}", flush=True)

        # 1. The post-start baseline, as the rules record it, against this script's own NVML reading.
        print(f"{stamp(t0)} == 1. post-start baseline", flush=True)
        before = show_nvml(t0, "after the start", gpus)
        sample(t0)
        baseline = State.load(host).memory.get(engine.pk)
        print(f"{stamp(t0)} baseline recorded by the rules: {baseline}", flush=True)
        if not args.cpu:
            if check(baseline is not None, "the rules recorded a post-start baseline"):
                for index in gpus:
                    mine = baseline["gpus"].get(str(index), 0)
                    nvml_total = sum(before.get(index, {}).get("processes", {}).values())
                    check(mine > 0 and abs(mine - nvml_total) <= 0.02 * before[index]["total"],
                          f"GPU {index}: baseline {mine / GIB:.2f} GiB = the engine's processes in this script's "
                          f"NVML reading ({nvml_total / GIB:.2f} GiB, within 2 % of the GPU)")
        else:
            check(baseline is None, "no baseline without GPUs (CPU dry run)")

        # Issue 19's memory diagnosis against the live engine, before the condition is staged: every line ok.
        print(f"{stamp(t0)} == diagnose (issue 19)", flush=True)
        check(run_command(scratch, t0, "diagnose", ENGINE) == 0, "manage.py diagnose exits 0 on the healthy engine")

        # 2. The condition made true on the real reading.
        print(f"{stamp(t0)} == 2. the condition: the row reserves {args.lowered:g} of each GPU while the process "
              f"holds what it took at {fields.get('gpu_memory_utilization', 'the default')}", flush=True)
        Engine.objects.filter(pk=engine.pk).update(gpu_memory_utilization=args.lowered)
        percent = min((100 * g["used"] / g["total"] for g in before.values()), default=50.0)
        threshold = max(1.0, round(percent - 10))
        TelemetryRules.objects.update_or_create(pk=1, defaults={
            "gpu_memory_percent": threshold, "gpu_memory_seconds": 0, "gpu_memory_restart": True,
            "restart_cooldown_minutes": 60, "foreign_gib": 1000.0})
        print(f"{stamp(t0)} rule: GPU memory above {threshold:g} % (the GPUs are at {percent:.1f} %) for 0 s",
              flush=True)
        if args.worker:
            worker, log = start_worker(scratch, t0, args.out)
        supervisor = Supervisor()
        sample(t0)
        # One incident per GPU of the engine; the first claims the engine's cool-down and starts the ladder.
        incident = Incident.objects.open().filter(source__endswith=":gpu-memory", message__contains="remedy:").first()
        if args.cpu:
            check(incident is None, "no GPU-memory incident without NVML (CPU dry run)")
            from monitoring.telemetry import remedy

            # The plumbing alone: the ladder an engine without sleep mode gets, on a condition NVML cannot read.
            plan, said = remedy.plan(engine, "telemetry:cpu-dry-run:gpu0:gpu-memory",
                                     remedy.gpu_memory_condition(0, threshold), "dry run")
            print(f"{stamp(t0)} plan: {said}", flush=True)
            check(plan["steps"] == ["full"], "without sleep mode the ladder is the full restart alone")
            Incident.objects.create(source=plan["source"], kind="gpu", title="dry run", level="orange",
                                    peak_level="orange", message="dry run", opened_at=timezone_now(),
                                    updated_at=timezone_now())
            remedy.begin(plan)
            source = plan["source"]
        else:
            if not check(incident is not None, "the GPU-memory rule raised on the real reading"):
                raise SystemExit(1)
            source = incident.source
            print(f"{stamp(t0)} incident {incident.source}: {incident.message}", flush=True)
            check("remedy: prefix cache reset -> soft restart -> full restart" in incident.message,
                  "the incident names the ladder")

        # 3. The ladder.
        print(f"{stamp(t0)} == 3. the ladder ({'Celery worker' if args.worker else 'stepped here'})", flush=True)
        started = time.time()
        events = run_ladder(t0, args, source, host, gpus)
        print(f"{stamp(t0)} ladder over after {time.time() - started:.1f} s", flush=True)
        engine.refresh_from_db()
        if args.cpu:
            check(len(events) == 1 and events[0].startswith("step 1 of 1, full restart: full restart in "),
                  "one step, the full restart, timed")
        else:
            check(len(events) == 3, f"three steps recorded (got {len(events)})")
            if len(events) == 3:
                check(events[0].startswith("step 1 of 3, prefix cache reset: prefix cache reset in ")
                      and "; not cured: " in events[0], "step 1: the prefix cache reset done, not cured")
                check(events[1].startswith("step 2 of 3, soft restart: soft restart in ")
                      and "; not cured: " in events[1], "step 2: the soft restart done, not cured")
                check("GPU memory back to " in events[1], "step 2: the GPU memory back to its post-start baseline")
                check(events[2].startswith("step 3 of 3, full restart: full restart in ")
                      and "; cured: " in events[2], "step 3: the full restart cured it")
            for note in events:
                seconds = re.search(r" in ([0-9.]+) s", note)
                print(f"  step duration: {seconds.group(1) if seconds else '?'} s: {note[:90]}", flush=True)
            check(engine.soft_restarts == 1, f"one soft restart counted ({engine.soft_restarts})")
            after = show_nvml(t0, "after the ladder", gpus)
            for index, gpu in after.items():
                held = sum(gpu["processes"].values())
                check(held <= (args.lowered + 0.02) * gpu["total"],
                      f"GPU {index}: the new process holds {held / GIB:.1f} GiB, within the lowered reservation "
                      f"({args.lowered:g} = {args.lowered * gpu['total'] / GIB:.1f} GiB + 2 %)")
        check(engine.state == "ready" and engine.restarts >= 1,
              f"the engine is ready after the full restart ({engine.state}, restarts {engine.restarts})")
        metrics = exporter.render().decode()
        lines = [ln for ln in metrics.splitlines() if ln.startswith("glmadmin_engine_") and "restart" in ln]
        print("  /metrics:\n    " + "\n    ".join(lines), flush=True)
        check(any(ln.startswith("glmadmin_engine_last_restart_seconds{") for ln in lines),
              "/metrics has the last full restart's duration")
        print("json " + json.dumps({"events": events, "baseline": baseline, "failed": FAILED}), flush=True)
    finally:
        if supervisor is not None:
            supervisor.stopping = True
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
            log.close()
        run_command(scratch, t0, "stop_engine", ENGINE, "--timeout", "120")
        if args.out:
            for found in scratch.dir.rglob("*.log"):
                shutil.copy(found, Path(args.out) / f"{found.parent.name}-{found.name}")
        scratch.close()
    print(f"{stamp(t0)} done: {len(FAILED)} check(s) failed" + (": " + "; ".join(FAILED) if FAILED else ""),
          flush=True)
    raise SystemExit(len(FAILED))


def timezone_now():
    from django.utils import timezone

    return timezone.now()


if __name__ == "__main__":
    main()
