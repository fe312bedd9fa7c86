"""Does one batch client with a default API key reach the engine's saturation before the gateway says 429?
(issue 13: the key defaults, measured on a real engine.)

On a scratch glmadmin (SQLite, private Redis, the gateway under uvicorn): start the engine with
manage.py start_engine, make an API key with nothing but the defaults (GLMADMIN_GATEWAY_KEY_CONCURRENCY,
_RPM, _TPM), then for C = 16, 64, 128, 256 and 320 concurrent streams from that one key, stream chat completions
back to back for --seconds each and print tokens/s, requests/s, TTFT p50, the 429s by code, and the engine's own
running/waiting requests. The engine is saturated where tokens/s stops growing with C while it queues
requests; the defaults are right when no 429 comes before that point.

    python3 scripts/gpu_check/key_defaults.py --model DIR [--gpu-ids 0 --tp 1] [--seconds 8] [--max-tokens 64]
    python3 scripts/gpu_check/key_defaults.py --cpu --streams 4 16    # a dry run on vLLM's CPU build

scripts/gpu_check/key_defaults_run.sh runs it on the lent GPU machine (see README.md beside this file).
"""

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from bench.common import Scratch  # noqa: E402
from bench.gateway.run import free_port, server_flags, start_gateway  # noqa: E402

ENGINE = "glm"


async def one(http, url, headers, body, records):
    sent = time.monotonic()
    record = {"sent": sent, "status": None, "code": "", "first": None, "tokens": 0}
    try:
        async with http.stream("POST", url, json=body, headers=headers) as r:
            record["status"] = r.status_code
            if r.status_code != 200:
                try:
                    record["code"] = json.loads(await r.aread())["error"].get("code") or ""
                except (ValueError, KeyError, TypeError):
                    record["code"] = "?"
                return record
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    record["first"] = record["first"] or time.monotonic()
                    record["tokens"] += 1
    except httpx.HTTPError as exc:
        record["code"] = type(exc).__name__
    finally:
        record["ended"] = time.monotonic()
        records.append(record)


async def load(url, headers, body, streams, seconds):
    records = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)

    async def client(http):
        while time.monotonic() < stop:
            await one(http, url, headers, body, records)
            if records[-1]["status"] != 200:
                await asyncio.sleep(0.05)  # a refused client retries at this pace, not in a tight loop

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, connect=10)) as http:
        await asyncio.gather(*(client(http) for _ in range(streams)))
    return records


class EngineLoad:
    """The engine's own running and waiting requests (its /metrics), read every 0.5 s from a thread."""

    def __init__(self, base_url):
        self.url, self.samples, self.stopping = f"{base_url}/metrics", [], False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                text = httpx.get(self.url, timeout=2).text
                values = {}
                for line in text.splitlines():
                    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting"):
                        if line.startswith(name + "{"):
                            values[name] = values.get(name, 0) + float(line.rsplit(" ", 1)[1])
                self.samples.append(values)
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    def take(self):
        taken, self.samples = self.samples, []
        return taken


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--gpu-ids", default="0")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--extra-args", default="--load-format dummy")
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 64, 128, 256, 320])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    scratch = Scratch("key-defaults")
    from django.conf import settings

    from inference.models import ApiKey, Engine

    if args.cpu:
        from inference import demo

        fields = {"model": str(scratch.demo_model()), "extra_args": demo.ENGINE_ARGS, "max_model_len": 2048}
    else:
        fields = {"model": args.model, "gpu_ids": args.gpu_ids, "tensor_parallel_size": args.tp,
                  "max_model_len": 8192, "gpu_memory_utilization": 0.85, "extra_args": args.extra_args.split()}
    engine = Engine.objects.create(name=ENGINE, port=free_port(), served_model_name=ENGINE, enforce_eager=True,
                                   shutdown_timeout=10, **fields)
    key = ApiKey(name="batch client")  # nothing but the defaults
    plain = key.new_secret()
    key.save()
    print(f"key defaults: {key.max_concurrent} concurrent, {key.requests_per_minute} requests/min, "
          f"tokens/min {key.tokens_per_minute or 'unlimited'} (GLMADMIN_GATEWAY_KEY_*: "
          f"{settings.GATEWAY_KEY_CONCURRENCY}, {settings.GATEWAY_KEY_RPM}, {settings.GATEWAY_KEY_TPM})", flush=True)
    gateway = None
    try:
        started = scratch.manage("start_engine", ENGINE, "--timeout", "600", check=False)
        if started.returncode != 0:
            raise SystemExit(f"start_engine failed:\n{started.stdout}\n{started.stderr}")
        engine.refresh_from_db()
        print(f"engine ready: {engine.state_reason}; max_num_seqs {engine.max_num_seqs or 'vLLM default'}",
              flush=True)
        port = free_port()
        gateway = start_gateway(scratch.env, port, server_flags())
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {plain}"}
        body = {"model": ENGINE, "messages": [{"role": "user", "content": "hello world"}], "stream": True,
                "max_tokens": args.max_tokens, "ignore_eos": True, "temperature": 0}
        asyncio.run(load(url, headers, body, 4, 3))  # warm-up (kernels of a new shape compile on first use)
        watch = EngineLoad(engine.base_url)
        rows = []
        for streams in args.streams:
            watch.take()
            records = asyncio.run(load(url, headers, body, streams, args.seconds))
            samples = watch.take()
            ok = [r for r in records if r["status"] == 200]
            span = max(r["ended"] for r in records) - min(r["sent"] for r in records)
            refused = Counter(f"{r['status']} {r['code']}" for r in records if r["status"] != 200)
            ttft = sorted(r["first"] - r["sent"] for r in ok if r["first"])
            running = max((s.get("vllm:num_requests_running", 0) for s in samples), default=0)
            waiting = max((s.get("vllm:num_requests_waiting", 0) for s in samples), default=0)
            row = {"streams": streams, "tokens_per_s": sum(r["tokens"] for r in ok) / span,
                   "requests_per_s": len(ok) / span, "ttft_p50_ms": 1000 * ttft[len(ttft) // 2] if ttft else None,
                   "refused": dict(refused), "engine_running_max": running, "engine_waiting_max": waiting}
            rows.append(row)
            p50 = f"{row['ttft_p50_ms']:.0f} ms" if row["ttft_p50_ms"] is not None else "-"
            print(f"{streams:4d} streams: {row['tokens_per_s']:8.0f} tokens/s, {row['requests_per_s']:6.1f} "
                  f"requests/s, TTFT p50 {p50}; refused {dict(refused) or 'none'}; engine running <= "
                  f"{running:.0f}, waiting <= {waiting:.0f}", flush=True)
        watch.stopping = True
        print("json " + json.dumps(rows), flush=True)
    finally:
        if gateway is not None:
            gateway.terminate()
        scratch.manage("stop_engine", "--all", check=False)
        scratch.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
