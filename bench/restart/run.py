"""Restart overhead: `manage.py restart_engine` to ready, against the same vLLM command started by hand.

Alternates, in one run: (A) restart_engine of a ready engine, timed from the
command's start to its exit (drain, stop, start, ready); (B) the identical
vLLM command and environment started by hand, timed to /health 200.
Reports medians, the overhead A - B and the ratio A / B. Goal: overhead <= 2 s.

    .venv/bin/python bench/restart/run.py [--rounds 3]
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import Scratch, median, wait_http  # noqa: E402

PORT = 8171


def by_hand(engine) -> float:
    from django.conf import settings

    from glmadmin.lib import processes
    from inference import options

    argv = options.command(engine, settings.ENGINE_PYTHON)
    env = options.environment(engine, {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_http(f"http://127.0.0.1:{PORT}/health")
    elapsed = time.monotonic() - started
    segments = processes.shared_memory(proc.pid)
    processes.kill_group(proc.pid)
    proc.wait()
    processes.remove_shared_memory(segments)
    while processes.port_holder(PORT):
        time.sleep(0.1)
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    scratch = Scratch("restart-bench")
    from inference import demo
    from inference.models import Engine

    engine = Engine.objects.create(name="bench", port=PORT, model=str(scratch.demo_model()),
                                   served_model_name="bench", enforce_eager=True, shutdown_timeout=10,
                                   extra_args=demo.ENGINE_ARGS)
    hand, restart = [], []
    try:
        for _ in range(args.rounds):
            hand.append(by_hand(engine))
            scratch.manage("start_engine", "bench")
            started = time.monotonic()
            result = scratch.manage("restart_engine", "bench")
            restart.append(time.monotonic() - started)
            print(f"by hand to /health {hand[-1]:5.1f} s | restart_engine to ready {restart[-1]:5.1f} s", flush=True)
            print("  " + "\n  ".join(result.stdout.splitlines()), flush=True)
            scratch.manage("stop_engine", "bench")
    finally:
        scratch.manage("stop_engine", "bench", check=False)
        scratch.close()
    a, b = median(restart), median(hand)
    print(f"median: restart_engine {a:.1f} s, by hand {b:.1f} s; overhead {a - b:+.1f} s (goal <= 2 s); "
          f"ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
