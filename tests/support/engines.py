"""Helpers for tests that run real vLLM engines (the CPU build with the generated demo model)."""

import time
from pathlib import Path

import psutil
from django.conf import settings

from glmadmin.lib import processes
from inference import supervisor
from inference.models import Engine


def require_runtime():
    assert Path(settings.ENGINE_PYTHON).exists(), (
        f"the engine runtime is missing at {settings.ENGINE_PYTHON}: scripts/test installs it")


def step_until(engine: Engine, done, timeout: float, what: str) -> Engine:
    """Step the supervisor as the beat task would until done(engine) holds."""
    deadline = time.monotonic() + timeout
    while True:
        supervisor.reconcile(engine.pk)
        engine.refresh_from_db()
        if done(engine):
            return engine
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s: {engine.state} {engine.state_reason}"
        time.sleep(0.3)  # the pace of the supervisor's steps, not a wait for an event


def engine_processes(port: int) -> list[psutil.Process]:
    """Every vLLM API server process serving this port."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if supervisor.VLLM_MARKER in cmdline and str(port) in cmdline:
            found.append(proc)
    return found


def events(engine: Engine) -> list[str]:
    return list(engine.events.order_by("pk").values_list("state", flat=True))


def stop_engines(port: int) -> None:
    """Kill every engine serving this port, and the shared memory its group mapped (vLLM's message queues)."""
    for proc in engine_processes(port):
        segments = processes.shared_memory(proc.pid)
        processes.kill_group(proc.pid)
        processes.remove_shared_memory(segments)


def starts_logged(engine: Engine) -> int:
    """How many times the supervisor has started this engine (by name, in this data directory): each start
    writes one header line to the engine's log before it spawns the process."""
    path = supervisor.log_file(engine)
    text = path.read_text() if path.exists() else ""
    return sum(1 for line in text.splitlines() if line.startswith("=== glmadmin ") and " starting" in line)
