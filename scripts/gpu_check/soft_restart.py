"""Soft restart against full restart of one engine, under a steady request stream through the gateway (issue 18).

In one run, on a scratch glmadmin (SQLite, private Redis, the gateway under uvicorn, no Celery: the commands step
the supervisor themselves): start the engine with manage.py start_engine, warm it up, start C clients that send
short streaming chat completions through the gateway back to back, then

  manage.py restart_engine NAME --soft   (drain, sleep, wake up, probe; timed from command start to exit = ready)
  manage.py restart_engine NAME          (the full restart: drain, stop, start; the same stream running)

and print, for each: the command's wall time and its own timed steps, the engine's pid before and after, GPU
memory per GPU before / lowest during / after (NVML, read every 0.1 s from a thread), and the requests that
overlapped it, by kind: served, refused before admission (the gateway's 503 while the engine is not routable:
new requests during the drain, the sleep or the restart), and failed after admission (the answer started, 200,
then broke or carried an error: the ones the drain must prevent) or without any answer.

    python3 scripts/gpu_check/soft_restart.py --model DIR [--gpu-ids 0,1 --tp 2] [--clients 6] [--soft-rounds 2]
    python3 scripts/gpu_check/soft_restart.py --cpu     # a dry run on vLLM's CPU build: the soft restart falls
                                                        # back to the full one (no sleep mode there)

scripts/gpu_check/soft_restart_run.sh runs it on the lent GPU machine (see README.md beside this file).
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import PY, Scratch  # noqa: E402
from bench.gateway.run import free_port, server_flags, start_gateway  # noqa: E402

ENGINE = "glm"
MARGIN = 2.0  # seconds after a command's end that still count as its window (a request refused just before it)


def stamp(t0: float) -> str:
    return f"[{time.time() - t0:7.1f}s]"


class Stream:
    """C clients sending streaming chat completions back to back through the gateway, in a thread of their own.
    Each request is recorded: when it was sent, when its answer started (admitted: HTTP 200), when it ended,
    and its outcome: ok, refused (an error status before any answer; with the error's code), failed (admitted,
    then broken off, an error event, or no [DONE]) or transport (no HTTP answer at all)."""

    def __init__(self, url: str, key: str, model: str, clients: int, max_tokens: int):
        self.url, self.clients = url, clients
        self.headers = {"Authorization": f"Bearer {key}"}
        self.body = {"model": model, "messages": [{"role": "user", "content": "hello world"}],
                     "max_tokens": max_tokens, "stream": True, "ignore_eos": True, "temperature": 0}
        self.records: list[dict] = []
        self.stopping = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=120)

    async def _run(self):
        limits = httpx.Limits(max_connections=self.clients + 4, max_keepalive_connections=self.clients + 4)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60, connect=10)) as http:
            await asyncio.gather(*(self._client(http, n) for n in range(self.clients)))

    async def _client(self, http, n):
        while not self.stopping:
            record = await self.one(http, n)
            self.records.append(record)
            if record["outcome"] != "ok":
                await asyncio.sleep(0.2)  # a refused client retries at this pace, not in a tight loop

    async def one(self, http, n) -> dict:
        record = {"client": n, "sent": time.time(), "admitted": None, "ended": None, "status": None, "code": "",
                  "outcome": "transport", "detail": ""}
        try:
            async with http.stream("POST", self.url, json=self.body, headers=self.headers) as r:
                record["status"] = r.status_code
                if r.status_code != 200:
                    raw = await r.aread()
                    try:
                        error = json.loads(raw)["error"]
                        record["code"], record["detail"] = error.get("code") or "", error.get("message", "")[:160]
                    except (ValueError, KeyError, TypeError):
                        record["detail"] = raw[:160].decode(errors="replace")
                    record["outcome"] = "refused"
                    return record
                record["admitted"] = time.time()
                record["outcome"] = "failed"  # until [DONE] arrives
                async for line in r.aiter_lines():
                    if line == "data: [DONE]":
                        record["outcome"] = "ok"
                    elif line.startswith("data: ") and '"error"' in line:
                        record["detail"] = line[:200]
                if record["outcome"] != "ok" and not record["detail"]:
                    record["detail"] = "the stream ended without [DONE]"
        except httpx.HTTPError as exc:
            record["detail"] = f"{type(exc).__name__}: {exc}"[:200]
        finally:
            record["ended"] = time.time()
        return record


class Memory:
    """GPU memory used per GPU (NVML), read every 0.1 s from a thread; nothing on a machine without NVML."""

    def __init__(self, gpus: list[int]):
        self.samples: list[tuple[float, list[float]]] = []
        self.handles = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in gpus]
        except Exception as exc:  # noqa: BLE001 - the CPU dry run has no NVML
            print(f"NVML not read: {exc}", flush=True)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        if self.handles:
            self.thread.start()

    def read(self) -> list[float]:
        return [self.nvml.nvmlDeviceGetMemoryInfo(h).used / 1e9 for h in self.handles]

    def _run(self):
        while not self.stopping:
            self.samples.append((time.time(), self.read()))
            time.sleep(0.1)  # the reading pace: a sleep of ~2 s must show

    def lowest(self, start: float, end: float) -> list[float]:
        inside = [used for t, used in self.samples if start <= t <= end]
        return [min(column) for column in zip(*inside, strict=True)] if inside else []

    def processes(self) -> str:
        """Per GPU: the compute processes and their memory (GB), as NVML lists them."""
        import psutil

        parts = []
        for i, h in enumerate(self.handles):
            procs = []
            for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(h):
                try:
                    name = psutil.Process(p.pid).name()
                except psutil.Error:
                    name = "?"
                procs.append(f"{name}({p.pid}) {(p.usedGpuMemory or 0) / 1e9:.1f}")
            parts.append(f"GPU{i}: " + (", ".join(procs) or "none"))
        return "; ".join(parts)


def fmt(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values) + " GB" if values else "n/a"


def run_command(scratch, t0, *args, timeout=900) -> tuple[float, float, int, list[str]]:
    """Run manage.py with args, printing each output line with the seconds since the command started."""
    started = time.time()
    print(f"{stamp(t0)} $ manage.py {' '.join(args)}", flush=True)
    proc = subprocess.Popen([PY, "manage.py", *args], cwd=ROOT, env=scratch.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        print(f"    +{time.time() - started:6.2f}s | {line.rstrip()}", flush=True)
    rc = proc.wait(timeout=timeout)
    ended = time.time()
    print(f"{stamp(t0)} exit {rc} after {ended - started:.2f} s (command start -> exit)", flush=True)
    return started, ended, rc, lines


def classify(records: list[dict], start: float, end: float) -> dict:
    """The requests that overlapped [start, end + MARGIN], by outcome."""
    window = [r for r in records if r["sent"] <= end + MARGIN and r["ended"] >= start]
    out = {"requests": len(window), "ok": 0, "refused": {}, "failed_admitted_before": [], "failed_admitted_after": [],
           "transport": []}
    for r in window:
        if r["outcome"] == "ok":
            out["ok"] += 1
        elif r["outcome"] == "refused":
            key = f"{r['status']} {r['code'] or '-'}"
            out["refused"][key] = out["refused"].get(key, 0) + 1
        elif r["outcome"] == "failed":
            which = "failed_admitted_before" if r["admitted"] < start else "failed_admitted_after"
            out[which].append(r)
        else:
            out["transport"].append(r)
    failures = [r for r in window if r["outcome"] != "ok"]
    if failures:
        out["first_failure"] = min(r["sent"] for r in failures) - start
        last = max(f["sent"] for f in failures)
        served_after = [r["admitted"] for r in window if r["outcome"] == "ok" and r["sent"] > last]
        out["first_served_after"] = (min(served_after) - start) if served_after else None
    return out


def report(name: str, c: dict, start: float):
    refused = ", ".join(f"{n} x HTTP {k}" for k, n in sorted(c["refused"].items())) or "none"
    print(f"  {name}: {c['requests']} requests overlapped it: {c['ok']} served; refused before admission: "
          f"{refused}; failed after admission: {len(c['failed_admitted_before'])} admitted before the command "
          f"started, {len(c['failed_admitted_after'])} admitted later; no HTTP answer: {len(c['transport'])}",
          flush=True)
    if "first_failure" in c:
        served = c["first_served_after"]
        print(f"    first non-served request sent at +{c['first_failure']:.2f} s, first one served after the last "
              f"non-served at +{served:.2f} s" if served is not None else "    none served afterwards", flush=True)
    for r in (c["failed_admitted_before"] + c["failed_admitted_after"] + c["transport"])[:8]:
        admitted = f"{r['admitted'] - start:+.2f} s" if r["admitted"] else "never"
        print(f"    {r['outcome']}: sent {r['sent'] - start:+.2f} s, admitted {admitted}, ended "
              f"{r['ended'] - start:+.2f} s: {r['detail']}", flush=True)


def engine_state():
    from inference.models import Engine

    engine = Engine.objects.get(name=ENGINE)
    return engine


def events_since(at: float) -> list[str]:
    from datetime import UTC, datetime

    from inference.models import EngineEvent

    since = datetime.fromtimestamp(at, UTC)
    return [f"{e.at:%H:%M:%S.%f}"[:-3] + f" {e.previous} -> {e.state}: {e.reason}"
            for e in EngineEvent.objects.filter(engine__name=ENGINE, at__gte=since).order_by("at", "pk")]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="model directory (the GLM-4.7-Flash-architecture checkpoint)")
    parser.add_argument("--cpu", action="store_true", help="dry run on vLLM's CPU build with the demo model")
    parser.add_argument("--gpu-ids", default="0,1")
    parser.add_argument("--tp", type=int, default=2)
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    parser.add_argument("--extra-args", default="--load-format dummy")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--soft-rounds", type=int, default=2)
    parser.add_argument("--settle", type=float, default=5, help="seconds of plain stream before and after each restart")
    parser.add_argument("--start-timeout", type=int, default=400)
    parser.add_argument("--diagnose", action="store_true", help="run manage.py diagnose on the warm engine first")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="where to copy the engine and gateway logs")
    args = parser.parse_args()
    t0 = time.time()
    scratch = Scratch("soft-restart")
    print(f"{stamp(t0)} scratch glmadmin in {scratch.dir}", flush=True)
    from inference import options
    from inference.models import ApiKey, Engine

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
    # Engine.objects.create, not full_clean: vLLM 0.24 on the GPU machine, not the version glmadmin's flag
    # table describes; the flags themselves are the recipe's (../shared/gpu-vllm/README.md).
    Engine.objects.create(name=ENGINE, port=free_port(), served_model_name=ENGINE, enforce_eager=True,
                          soft_restart=True, **fields)
    print(f"{stamp(t0)} sleep mode available here: {options.sleep_mode_available()}; engine row: {fields}", flush=True)
    key = ApiKey(name="stream", requests_per_minute=10**6, max_concurrent=10**4)
    plain = key.new_secret()
    key.save()
    memory = Memory(gpus)
    gateway = stream = None
    summary = {}
    try:
        _, _, rc, _ = run_command(scratch, t0, "start_engine", ENGINE, "--timeout", str(args.start_timeout))
        if rc != 0:
            raise SystemExit("start_engine failed")
        engine = engine_state()
        import psutil

        print(f"{stamp(t0)} engine pid {engine.pid}: {' '.join(psutil.Process(engine.pid).cmdline())}", flush=True)
        if memory.handles:
            print(f"{stamp(t0)} NVML after start: {fmt(memory.read())}; {memory.processes()}", flush=True)
        port = free_port()
        gateway = start_gateway(scratch, port, server_flags())
        stream = Stream(f"http://127.0.0.1:{port}/v1/chat/completions", plain, ENGINE, args.clients, args.max_tokens)
        # Warm up (the first requests of a shape JIT-compile the MoE kernels under --enforce-eager): a few rounds
        # until one is served quickly.
        for i in range(20):
            started = time.time()
            r = httpx.post(stream.url, json=dict(stream.body, stream=False), headers=stream.headers, timeout=120)
            print(f"{stamp(t0)} warm-up {i}: HTTP {r.status_code} in {time.time() - started:.2f} s", flush=True)
            if r.status_code == 200 and time.time() - started < 1 and i >= 2:
                break
        stream.start()
        time.sleep(args.settle)
        if args.diagnose:
            # Issue 19's memory diagnosis against the live CUDA engine, with the stream running (KV cache in use).
            _, _, rc, _ = run_command(scratch, t0, "diagnose", ENGINE)
            summary["diagnose_rc"] = rc
        rounds = [("soft", i) for i in range(args.soft_rounds)] + [("full", 0)]
        for kind, i in rounds:
            name = f"{kind} restart" + (f" {i + 1}" if kind == "soft" and args.soft_rounds > 1 else "")
            before_pid = engine_state().pid
            before_mem = memory.read() if memory.handles else []
            print(f"{stamp(t0)} == {name}; {len(stream.records)} requests so far; GPU memory {fmt(before_mem)}",
                  flush=True)
            soft = ["--soft"] if kind == "soft" else []
            argv = ["restart_engine", ENGINE, "--timeout", str(args.start_timeout), *soft]
            started, ended, rc, lines = run_command(scratch, t0, *argv)
            time.sleep(args.settle)
            engine = engine_state()
            after_mem = memory.read() if memory.handles else []
            c = classify(list(stream.records), started, ended)
            row = {"seconds": ended - started, "rc": rc, "pid_before": before_pid, "pid_after": engine.pid,
                   "state": engine.state, "soft_restarts": engine.soft_restarts,
                   "last_soft_restart_seconds": engine.last_soft_restart_seconds,
                   "memory_before": before_mem, "memory_lowest": memory.lowest(started, ended),
                   "memory_after": after_mem, "steps": [ln for ln in lines if "s  " in ln],
                   "requests": c["requests"], "ok": c["ok"], "refused": c["refused"],
                   "failed_admitted_before": len(c["failed_admitted_before"]),
                   "failed_admitted_after": len(c["failed_admitted_after"]), "transport": len(c["transport"])}
            summary[name] = row
            print(f"{stamp(t0)} {name}: {row['seconds']:.2f} s command start -> ready (rc {rc}); pid "
                  f"{before_pid} -> {engine.pid}; state {engine.state}; soft_restarts {engine.soft_restarts}, "
                  f"last {engine.last_soft_restart_seconds}", flush=True)
            print(f"  GPU memory before {fmt(before_mem)}, lowest during {fmt(row['memory_lowest'])}, "
                  f"{args.settle:.0f} s after {fmt(after_mem)}", flush=True)
            if memory.handles:
                print(f"  NVML processes after: {memory.processes()}", flush=True)
            for line in events_since(started):
                print(f"  event {line}", flush=True)
            report(name, c, started)
        stream.stop()
        total = stream.records
        print(f"{stamp(t0)} stream: {len(total)} requests in all, "
              f"{sum(r['outcome'] == 'ok' for r in total)} served", flush=True)
        print("== summary", flush=True)
        full = summary["full restart"]["seconds"]
        for name, row in summary.items():
            if not isinstance(row, dict):
                continue
            ratio = f", {full / row['seconds']:.1f}x faster than the full restart" if name != "full restart" else ""
            refused = sum(row["refused"].values())
            print(f"{name:15s} {row['seconds']:7.2f} s{ratio}; requests overlapping {row['requests']}: served "
                  f"{row['ok']}, refused before admission {refused} {row['refused'] or ''}, failed after admission "
                  f"{row['failed_admitted_before']} (admitted before the command) + {row['failed_admitted_after']} "
                  f"(later), no answer {row['transport']}; GPU memory {fmt(row['memory_before'])} -> lowest "
                  f"{fmt(row['memory_lowest'])} -> {fmt(row['memory_after'])}", flush=True)
        print("json " + json.dumps(summary), flush=True)
    finally:
        if stream is not None and not stream.stopping:
            stream.stop()
        memory.stopping = True
        run_command(scratch, t0, "stop_engine", ENGINE, "--timeout", "120")
        if memory.handles:
            time.sleep(1)
            print(f"{stamp(t0)} NVML after stop: {fmt(memory.read())}; {memory.processes()}", flush=True)
        if gateway is not None:
            gateway.terminate()
        if args.out:
            for log in scratch.dir.rglob("*.log"):
                shutil.copy(log, Path(args.out) / f"{log.parent.name}-{log.name}")
        scratch.close()
        print(f"{stamp(t0)} done", flush=True)


if __name__ == "__main__":
    main()
