"""What the gateway adds: time to first token and throughput, through it vs. straight to vLLM.

In one run, on a scratch glmadmin with one real vLLM engine (CPU build, demo model):

  (A) the reference: C concurrent streaming clients straight to the engine;
  (B) the same load through the gateway (uvicorn, one process) with an API key;

for C in 1, 16 and 64, alternating A and B round by round so drift hits both.
Each client streams completions of a fixed max_tokens back to back. Reports
added TTFT p50/p99 (B - A) and the throughput ratio B / A (tokens/s).

Then the gateway's own capacity: SSE chunks/s through one gateway process from
a fast synthetic upstream (bench/gateway/synthetic.py), against the same
client reading the synthetic upstream directly.

    .venv/bin/python bench/gateway/run.py [--rounds 3] [--seconds 8] [--max-tokens 32] [--model DIR]
                                          [--only paced|capacity] [--clients N]

--only paced skips the engine: the paced synthetic upstream alone (what a small machine can measure).
A request that fails is counted (failed_direct / failed_gateway), not fatal to the run.
The C streams are spread over client processes (--clients N; by default one per 16 streams, at most one
fewer than the cores), so that the client is not what saturates at 64 streams.

On a machine with an NVIDIA GPU the engine runs on GPU 0 (scripts/gpu_check/README.md says how it was
run on the lent H100).
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import PY, ROOT, Scratch, wait_http  # noqa: E402

ENGINE_PORT = 8143
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def one_stream(http, url, headers, body, ttfts, counts):
    started = time.perf_counter()
    first, tokens = None, 0
    async with http.stream("POST", url, json=body, headers=headers) as r:
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {(await r.aread())[:200]!r}")
        async for chunk in r.aiter_raw():
            if first is None:
                first = time.perf_counter() - started
            tokens += chunk.count(b"\n\n")  # one event per token (and one [DONE])
    ttfts.append(first)
    counts.append(tokens - 1)


async def _stream_for(url, headers, body, clients, start_at, seconds):
    """One client process' share: `clients` streams back to back from start_at (a shared wall-clock
    instant, so every process's streams overlap) for `seconds`. A failed request is counted and the
    client goes on: one broken connection must not end a whole run."""
    ttfts, counts, failures = [], [], []
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds

        async def client():
            while time.perf_counter() < deadline:
                try:
                    await one_stream(http, url, headers, body, ttfts, counts)
                except (httpx.HTTPError, RuntimeError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(client() for _ in range(clients)))
    return ttfts, sum(counts), time.time(), failures


def _part(url, headers, body, clients, start_at, seconds):
    return asyncio.run(_stream_for(url, headers, body, clients, start_at, seconds))


class Clients:
    """The load generator: C concurrent streams spread over client processes, so that at 64 streams the
    client (Python, one core a process) is not what saturates. The processes are started once and reused."""

    def __init__(self, processes: int | None):
        self.fixed = processes
        self.pool, self.size = None, 0

    def processes(self, clients: int) -> int:
        """--clients when given, else one process per 16 streams, leaving a core to the rest."""
        cores = os.cpu_count() or 1
        wanted = self.fixed or min(cores - 1, math.ceil(clients / 16))
        return max(1, min(wanted, clients))

    def load(self, url, headers, body, clients, seconds, failures=None):
        """(TTFTs, tokens/s) of `clients` streams for `seconds`; failures, when given, gets the failed ones."""
        n = self.processes(clients)
        if self.size < n:
            self.close()
            # spawn, not fork: the parent holds Django, a database connection and Redis clients.
            self.pool, self.size = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")), n
        # Started a moment ahead: every process is waiting when the clock reaches it.
        start_at = time.time() + 0.3
        shares = [clients // n + (i < clients % n) for i in range(n)]
        parts = [self.pool.submit(_part, url, headers, body, share, start_at, seconds) for share in shares]
        ttfts, tokens, ended = [], 0, start_at
        for part in parts:
            part_ttfts, part_tokens, part_ended, part_failures = part.result()
            ttfts += part_ttfts
            tokens += part_tokens
            ended = max(ended, part_ended)
            if failures is not None:
                failures += part_failures
        return ttfts, tokens / (ended - start_at)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
            self.pool, self.size = None, 0


def server_flags() -> list[str]:
    """uvicorn's loop and HTTP parser as the Procfile runs them (uvloop, httptools). Where one is not
    installed, uvicorn's fallback (asyncio, h11) is named and said: h11, pure Python, costs the gateway
    about 0.1 ms a request and more per streamed chunk, so such numbers are not the production path's."""
    import importlib.util

    flags = []
    for option, fast, fallback in (("--loop", "uvloop", "asyncio"), ("--http", "httptools", "h11")):
        found = importlib.util.find_spec(fast) is not None
        flags += [option, fast if found else fallback]
        if not found:
            print(f"note: {fast} is not installed; the gateway runs on {fallback} (not the production path)",
                  flush=True)
    return flags


def start_gateway(scratch, port, flags):
    proc = subprocess.Popen([PY, "-m", "uvicorn", "glmadmin.asgi:application", "--port", str(port),
                             "--no-access-log", "--log-level", "warning", *flags], cwd=ROOT, env=scratch.env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def compare(args, direct_url, gateway_url, headers, model):
    load = args.load.load
    body = {"model": model, "prompt": "hello", "max_tokens": args.max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0}
    rows = []
    for clients in (1, 16, 64):
        samples = {"direct": ([], []), "gateway": ([], [])}
        failed = {"direct": [], "gateway": []}
        load(direct_url, {}, body, clients, 2)  # warm up both paths (and the client processes)
        load(gateway_url, headers, body, clients, 2)
        for round_ in range(args.rounds):
            order = [("direct", direct_url, {}), ("gateway", gateway_url, headers)]
            for name, url, hdrs in order if round_ % 2 == 0 else order[::-1]:
                ttfts, rate = load(url, hdrs, body, clients, args.seconds, failed[name])
                samples[name][0].extend(ttfts)
                samples[name][1].append(rate)
        for name, errors in failed.items():
            if errors:
                print(f"    {len(errors)} {name} request(s) failed, e.g. {errors[0]}", flush=True)
        (a_ttft, a_rate), (b_ttft, b_rate) = samples["direct"], samples["gateway"]
        row = {"clients": clients, "client_processes": args.load.processes(clients),
               "requests_direct": len(a_ttft), "requests_gateway": len(b_ttft),
               "failed_direct": len(failed["direct"]), "failed_gateway": len(failed["gateway"]),
               "ttft_p50_direct_ms": percentile(a_ttft, 0.5) * 1000,
               "ttft_p50_gateway_ms": percentile(b_ttft, 0.5) * 1000,
               "ttft_p99_direct_ms": percentile(a_ttft, 0.99) * 1000,
               "ttft_p99_gateway_ms": percentile(b_ttft, 0.99) * 1000,
               "tokens_per_s_direct": sum(a_rate) / len(a_rate), "tokens_per_s_gateway": sum(b_rate) / len(b_rate)}
        row["added_ttft_p50_ms"] = row["ttft_p50_gateway_ms"] - row["ttft_p50_direct_ms"]
        row["added_ttft_p99_ms"] = row["ttft_p99_gateway_ms"] - row["ttft_p99_direct_ms"]
        row["throughput_ratio"] = row["tokens_per_s_gateway"] / row["tokens_per_s_direct"]
        rows.append(row)
        print(f"{clients:>3} streams: TTFT p50 {row['ttft_p50_direct_ms']:.1f} -> {row['ttft_p50_gateway_ms']:.1f} ms "
              f"(added {row['added_ttft_p50_ms']:+.2f}), p99 {row['ttft_p99_direct_ms']:.1f} -> "
              f"{row['ttft_p99_gateway_ms']:.1f} ms (added {row['added_ttft_p99_ms']:+.2f}); tokens/s "
              f"{row['tokens_per_s_direct']:.0f} -> {row['tokens_per_s_gateway']:.0f} "
              f"(ratio {row['throughput_ratio']:.3f} vs direct)", flush=True)
    return rows


def paced(args, gateway_url, headers):
    """The same A/B against a synthetic upstream paced like an engine (no engine competing for the CPU)."""
    from inference.gateway import routing
    from inference.models import Engine

    port = free_port()
    upstream = subprocess.Popen([PY, str(Path(__file__).with_name("synthetic.py")), str(port), "20", "5"])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30)
        # No supervisor runs here (nothing would start it): marked ready by hand.
        Engine.objects.create(name="paced", port=port, model="paced", served_model_name="paced")
        Engine.objects.filter(name="paced").update(state="ready")
        routing.publish()
        print("paced synthetic upstream (20 ms to first token, 5 ms per token):", flush=True)
        return compare(args, f"http://127.0.0.1:{port}/v1/completions", gateway_url, headers, "paced")
    finally:
        upstream.terminate()


def capacity(args, scratch, gateway_url, headers):
    """SSE chunks/s through one gateway process from the synthetic upstream (vs. reading it directly)."""
    from inference.gateway import routing
    from inference.models import Engine

    port = free_port()
    upstream = subprocess.Popen([PY, str(Path(__file__).with_name("synthetic.py")), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30)
        # Never started by a supervisor (none runs here); marked ready by hand below.
        Engine.objects.create(name="synthetic", port=port, model="synthetic", served_model_name="synthetic")
        Engine.objects.filter(name="synthetic").update(state="ready")
        routing.publish()
        body = {"model": "synthetic", "prompt": "x", "max_tokens": 2000, "stream": True}
        results = {}
        for name, url, hdrs in (("direct", f"http://127.0.0.1:{port}/v1/completions", {}),
                                ("gateway", gateway_url, headers)) * 2:
            _, rate = args.load.load(url, hdrs, body, args.capacity_clients, args.seconds)
            results.setdefault(name, []).append(rate)
        direct, gateway = max(results["direct"]), max(results["gateway"])
        print(f"capacity, {args.capacity_clients} streams from a synthetic upstream: {gateway:.0f} SSE chunks/s "
              f"through one gateway process vs {direct:.0f} read directly (ratio {gateway / direct:.2f})", flush=True)
        return {"clients": args.capacity_clients, "client_processes": args.load.processes(args.capacity_clients),
                "chunks_per_s_gateway": gateway, "chunks_per_s_direct": direct}
    finally:
        upstream.terminate()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--capacity-clients", type=int, default=32)
    parser.add_argument("--model", help="a model directory to serve instead of generating the demo model")
    parser.add_argument("--only", choices=("paced", "capacity"), help="only this part: no engine is started")
    parser.add_argument("--clients", type=int, help="client processes the streams are spread over "
                        "(default: one per 16 streams, at most one fewer than the cores)")
    args = parser.parse_args()
    args.load = Clients(args.clients)
    scratch = Scratch("gateway-bench")
    from inference import demo
    from inference.models import ApiKey, Engine

    with_engine = args.only is None
    # On a GPU machine the same tiny model runs on the first GPU (a small share of its memory).
    gpu = {"gpu_ids": "0", "gpu_memory_utilization": 0.2} if demo.has_nvidia_gpu() else {}
    if with_engine:
        model = args.model or str(scratch.demo_model())
        Engine.objects.create(name="bench", port=ENGINE_PORT, model=model, served_model_name="bench",
                              enforce_eager=True, max_num_seqs=128, extra_args=[] if args.model else demo.ENGINE_ARGS,
                              **gpu)
    key = ApiKey(name="bench", requests_per_minute=10**6, max_concurrent=10**4)
    plain = key.new_secret()
    key.save()
    gateway_port = free_port()
    gateway = None
    results = {"args": {name: value for name, value in vars(args).items() if name != "load"}}
    try:
        if with_engine:
            scratch.manage("start_engine", "bench", "--timeout", "600")
        results["server"] = server_flags()
        gateway = start_gateway(scratch, gateway_port, results["server"])
        headers = {"Authorization": f"Bearer {plain}"}
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/completions"
        if with_engine:
            print(f"real vLLM engine ({'GPU' if gpu else 'CPU'} build, demo model):", flush=True)
            results["vllm"] = compare(args, f"http://127.0.0.1:{ENGINE_PORT}/v1/completions", gateway_url, headers,
                                      "bench")
            scratch.manage("stop_engine", "bench")  # its CPU use would blur the next measurements
        if args.only in (None, "paced"):
            results["paced"] = paced(args, gateway_url, headers)
        if args.only in (None, "capacity"):
            results["capacity"] = capacity(args, scratch, gateway_url, headers)
        for name in ("vllm", "paced"):
            if name in results:
                at16, at64 = results[name][1], results[name][2]
                print(f"goals ({name}): added TTFT at 16 streams p50 {at16['added_ttft_p50_ms']:+.2f} ms (goal <= 1), "
                      f"p99 {at16['added_ttft_p99_ms']:+.2f} ms (goal <= 5); throughput ratio at 64 streams "
                      f"{at64['throughput_ratio']:.3f} vs direct (goal >= 0.97)")
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"gateway-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(results, indent=1))
        print(f"results: {out}")
    finally:
        args.load.close()
        if gateway is not None:
            gateway.terminate()
        if with_engine:
            scratch.manage("stop_engine", "--all", check=False)
        scratch.close()

if __name__ == "__main__":
    main()
