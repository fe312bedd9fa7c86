"""Failed requests during a rolling restart of two engines under steady streaming load.

The load: C concurrent clients streaming completions (fixed max_tokens), each
request routed to a ready engine as a gateway would (engine states read from
the database every 200 ms; draining engines get no new requests). In one run:

  (A) `manage.py restart_engine --all --rolling` while the load runs;
  (B) the reference, a naive restart: each engine in turn gets SIGTERM with
      vLLM's default --shutdown-timeout 0 and is started again, while the
      router keeps sending it requests until it notices.

Reports requests completed and failed in each. Goal for (A): 0 failed.

    .venv/bin/python bench/rolling_restart/run.py [--clients 3] [--max-tokens 32]
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import PY, ROOT, Scratch  # noqa: E402

PORTS = (8181, 8182)


class Load:
    def __init__(self, clients: int, max_tokens: int, pause: float = 0.2):
        self.clients, self.max_tokens, self.pause = clients, max_tokens, pause
        self.ready: list[int] = []
        self.ok, self.failed, self.reasons = 0, 0, Counter()
        self.running = True
        self.turn = 0

    async def watch_states(self):
        from asgiref.sync import sync_to_async

        from inference.models import Engine, EngineState

        def ready_ports():
            return list(Engine.objects.filter(state=EngineState.READY).values_list("port", flat=True))

        while self.running:
            self.ready = await sync_to_async(ready_ports)()
            await asyncio.sleep(0.2)  # the router's refresh period

    async def client(self, http: httpx.AsyncClient):
        while self.running:
            if not self.ready:
                await asyncio.sleep(0.05)  # nothing to route to: a gateway would answer 503 here
                continue
            self.turn += 1
            port = self.ready[self.turn % len(self.ready)]
            try:
                await self.stream(http, port)
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure counts, whatever its kind
                self.failed += 1
                self.reasons[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
            await asyncio.sleep(self.pause)  # a steady load, not a saturating one: the engines must start too

    async def stream(self, http, port):
        body = {"model": "bench", "prompt": "hello", "max_tokens": self.max_tokens, "stream": True,
                "ignore_eos": True, "stream_options": {"include_usage": True}}
        async with http.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60) as r:
            if r.status_code != 200:
                raise RuntimeError(f"HTTP {r.status_code}")
            # SSE events end with a blank line. Split the bytes ourselves: a line splitter would also
            # break at U+2028 or U+0085, which a random model's text can contain.
            buffer, done, tokens = b"", False, 0
            async for data in r.aiter_bytes():
                buffer += data
                *events, buffer = buffer.split(b"\n\n")
                for event in events:
                    payload = event.decode().removeprefix("data: ")
                    if payload == "[DONE]":
                        done = True
                        continue
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        raise RuntimeError(chunk["error"])
                    if chunk.get("usage"):
                        tokens = chunk["usage"]["completion_tokens"]
            if not done or tokens != self.max_tokens:
                raise RuntimeError(f"stream cut: {tokens} tokens, done={done}")

    async def run_during(self, action):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as http:
            watcher = asyncio.create_task(self.watch_states())
            await asyncio.sleep(0.5)
            workers = [asyncio.create_task(self.client(http)) for _ in range(self.clients)]
            await asyncio.sleep(3)  # steady state first
            started = time.monotonic()
            await action()
            took = time.monotonic() - started
            await asyncio.sleep(3)
            self.running = False
            await asyncio.gather(*workers, watcher)
        return took


async def manage(scratch, *args):
    proc = await asyncio.create_subprocess_exec(PY, "manage.py", *args, cwd=ROOT, env=scratch.env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{out.decode()}")
    return out.decode()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    scratch = Scratch("rolling-bench")
    from inference import demo
    from inference.models import Engine

    model = scratch.demo_model()
    for i, port in enumerate(PORTS):
        # One core each: vLLM's CPU build would otherwise pin both engines' threads to core 0.
        Engine.objects.create(name=f"e{i}", port=port, model=str(model), served_model_name="bench",
                              enforce_eager=True, shutdown_timeout=10, env={"VLLM_CPU_OMP_THREADS_BIND": str(i)},
                              extra_args=demo.ENGINE_ARGS)
    try:
        scratch.manage("start_engine", "--all")

        rolling = Load(args.clients, args.max_tokens)
        took = asyncio.run(rolling.run_during(lambda: manage(scratch, "restart_engine", "--all", "--rolling")))
        print(f"(A) restart_engine --all --rolling: {took:.0f} s, {rolling.ok} requests completed, "
              f"{rolling.failed} failed {dict(rolling.reasons)}", flush=True)

        # The reference: engines that abort in-flight work on SIGTERM, restarted one by one without draining.
        Engine.objects.update(shutdown_timeout=0)
        scratch.manage("restart_engine", "--all")

        async def naive():
            from asgiref.sync import sync_to_async

            for name in ("e0", "e1"):
                pid = await sync_to_async(lambda n=name: Engine.objects.get(name=n).pid)()
                os.kill(pid, signal.SIGTERM)
                await manage(scratch, "start_engine", name)

        naive_load = Load(args.clients, args.max_tokens)
        took = asyncio.run(naive_load.run_during(naive))
        print(f"(B) naive restart, one by one: {took:.0f} s, {naive_load.ok} requests completed, "
              f"{naive_load.failed} failed {dict(naive_load.reasons)}", flush=True)
        print(f"failed requests: rolling {rolling.failed} vs naive {naive_load.failed} (goal: rolling 0)")
    finally:
        scratch.manage("stop_engine", "--all", check=False)
        scratch.close()


if __name__ == "__main__":
    main()
