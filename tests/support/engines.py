"""Helpers for tests that run real vLLM engines (the CPU build with the generated demo model)."""

import sys
import time
from pathlib import Path

import psutil
from django.conf import settings

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


def slow_engine_runtime(directory: Path) -> Path:
    """An engine runtime `python` (for settings.ENGINE_PYTHON) that runs tests/support/slow_engine.py: a process
    the supervisor manages like vLLM, whose model loads until the test writes `loaded` into its model directory."""
    script = Path(__file__).with_name("slow_engine.py")
    runtime = directory / "python"
    runtime.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    runtime.chmod(0o755)
    return runtime


def starts(model: Path) -> list[int]:
    """The pids of every start of a slow_engine whose model directory is `model`."""
    path = model / "starts"
    return [int(line) for line in path.read_text().split()] if path.exists() else []
