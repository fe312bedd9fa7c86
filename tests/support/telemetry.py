"""Shared by the telemetry tests: real process trees standing in for engines, a real /metrics server,
made-up cycles and a parser of exposition text."""

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from prometheus_client.parser import text_string_to_metric_families

from monitoring.telemetry.readings import Cycle, EngineReading, GpuReading, HostReading

# The leader starts a child in its own group and a grandchild that leaves the group (setsid),
# prints both pids and waits: the shape of vLLM's API server and its EngineCore.
TREE = """
import os, subprocess, sys, time
same = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
apart = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(120)"])
print(same.pid, apart.pid, flush=True)
time.sleep(120)
"""


class ProcessTree:
    def __init__(self):
        self.leader = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
        self.child, self.grandchild = (int(p) for p in self.leader.stdout.readline().split())

    @property
    def create_time(self) -> float:
        return psutil.Process(self.leader.pid).create_time()

    def kill(self):
        for pid in (self.grandchild, self.child, self.leader.pid):
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass
        self.leader.wait(timeout=10)


def invisible_pid() -> int:
    """A pid no process of this namespace has (as NVML reports for a process in another container)."""
    pid = 4_194_000
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


CAPTURED = Path(__file__).with_name("fixtures") / "vllm_metrics.txt"


class MetricsServer:
    """A real HTTP server answering /metrics with whatever text the test sets."""

    def __init__(self, text: str = ""):
        self.text = text
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                body = owner.text.encode()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def cycle(at, used=10, util=20.0, tps=None, cpu=5.0, host="local") -> Cycle:
    return Cycle(
        taken_at=at,
        host_name=host,
        host=HostReading(cpu_percent=cpu, memory_used=100, memory_total=1000),
        gpus=(GpuReading(index=0, uuid="GPU-a", name="H100", memory_used=used, memory_total=80, utilization=util,
                         temperature=50.0, power_draw=100.0, power_limit=700.0),),
        engines=(EngineReading(engine_id=7, gpus=(0,), kv_cache_usage=10.0, requests_running=1.0,
                               requests_waiting=0.0, ttft_p50=None, ttft_p95=None, generation_tokens_per_s=tps,
                               prefix_cache_hit_rate=None, rss_bytes=2000),),
    )
