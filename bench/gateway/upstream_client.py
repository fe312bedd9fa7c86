"""CPU per SSE chunk of the gateway's upstream client alone (inference/gateway/upstream.py), no gateway around it.

32 concurrent streams of 2,000 chunks each, back to back, from the fast synthetic upstream (synthetic.py, in
its own process), read through the client's pool on uvloop as the gateway does. The module is loaded from a
path, so that two versions (e.g. a `git archive` of an older commit beside this tree) are measured alike:

    .venv/bin/python bench/gateway/synthetic.py 18777 &
    .venv/bin/python bench/gateway/upstream_client.py 18777 inference/gateway/upstream.py \
        /tmp/old/inference/gateway/upstream.py

Each path is measured --rounds times, the paths taking turns. Reports chunks/s (wall, bounded by the
synthetic upstream) and the client's CPU microseconds per chunk (process time: less sensitive to other load).
"""

import argparse
import asyncio
import importlib.util
import json
import time


def load(path: str):
    spec = importlib.util.spec_from_file_location("upstream_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(path: str, port: int, seconds: float, streams: int) -> tuple[int, float, float]:
    upstream = load(path)
    pool = upstream.Pool(5)
    body = json.dumps({"model": "synthetic", "prompt": "x", "max_tokens": 2000, "stream": True}).encode()
    chunks = 0
    deadline = time.monotonic() + seconds

    async def stream():
        nonlocal chunks
        while time.monotonic() < deadline:
            response = await pool.post(f"http://127.0.0.1:{port}", "/v1/completions", body)
            async for part in response.body():
                chunks += part.count(b"\n\n")
            await response.aclose()

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(stream() for _ in range(streams)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    pool.close()
    return chunks, chunks / wall, cpu / chunks * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int, help="where bench/gateway/synthetic.py listens")
    parser.add_argument("paths", nargs="+", help="upstream.py files to measure")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=32)
    args = parser.parse_args()
    try:
        import uvloop  # the gateway's loop (uvicorn --loop uvloop)
        run = uvloop.run
    except ImportError:
        run = asyncio.run
    for round_ in range(args.rounds):
        for path in args.paths:
            chunks, rate, cpu_us = run(measure(path, args.port, args.seconds, args.streams))
            print(f"round {round_ + 1} {path}: {chunks} chunks, {rate:,.0f}/s, {cpu_us:.2f} µs CPU a chunk",
                  flush=True)


if __name__ == "__main__":
    main()
