"""Cycles made by hand for the telemetry rule tests, with time moved by time-machine (never slept).

A test builds what the sampler would have seen (GPU and engine readings) and steps the clock,
calling rules.evaluate() once per sampling interval, exactly as the sampler does.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from alerts.models import Incident
from glmadmin.lib import redis as rd
from inference.control import host_queue
from inference.models import Engine, EngineState
from monitoring.models import TelemetryRules
from monitoring.telemetry.readings import Cycle, EngineReading, GpuProcess, GpuReading, HostReading
from monitoring.telemetry.rules import evaluate as rules

GIB = 1024**3
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 10  # the default sampling interval (TelemetrySettings)


def gpu(index: int, memory: float = 50.0, util: float | None = 30.0, processes=(), total_gib: int = 24) -> GpuReading:
    total = total_gib * GIB
    return GpuReading(index=index, uuid=f"GPU-{index}", name="NVIDIA GeForce RTX 4090 D",
                      memory_used=int(total * memory / 100), memory_total=total, utilization=util,
                      temperature=60.0, power_draw=200.0, power_limit=425.0, processes=tuple(processes))


def proc(pid: int, gib: float | None, name: str = "python3", engine_id: int | None = None) -> GpuProcess:
    return GpuProcess(pid=pid, used_bytes=None if gib is None else int(gib * GIB), name=name, engine_id=engine_id)


def reading(engine: Engine, **values) -> EngineReading:
    defaults = {"kv_cache_usage": 10.0, "requests_running": 0.0, "requests_waiting": 0.0, "ttft_p50": 0.2,
                "ttft_p95": 0.4, "generation_tokens_per_s": 0.0, "prefix_cache_hit_rate": None,
                "rss_bytes": 2 * GIB}
    return EngineReading(engine_id=engine.pk, gpus=tuple(engine.gpus), **{**defaults, **values})


def cycle(gpus=(), engines=(), gpu_status: str = "") -> Cycle:
    return Cycle(taken_at=timezone.now(), host_name=settings.GLMADMIN_HOST_NAME,
                 host=HostReading(cpu_percent=10.0, memory_used=8 * GIB, memory_total=64 * GIB),
                 gpus=tuple(gpus), gpu_status=gpu_status, engines=tuple(engines))


def ready_engine(name: str = "glm", gpu_ids: str = "0", port: int = 8165) -> Engine:
    size = len([g for g in gpu_ids.split(",") if g.strip()]) or 1
    return Engine.objects.create(name=name, port=port, model="/m", served_model_name=name, gpu_ids=gpu_ids,
                                 tensor_parallel_size=size, state=EngineState.READY, ready_at=timezone.now(),
                                 pid=None, running_generation=0, restart_generation=0)


class Clock:
    """The sampler's pace: one cycle every INTERVAL seconds, evaluated as the sampler would."""

    def __init__(self, time_machine):
        self.tm = time_machine
        self.now = START
        self.evaluated_at = None
        self.tm.move_to(self.now, tick=False)

    def skip(self, seconds: float) -> None:
        """Time passes with no cycle at all (the sampler was down)."""
        self.now += timedelta(seconds=seconds)
        self.tm.move_to(self.now, tick=False)

    def run(self, seconds: float, make_cycle) -> list:
        """`seconds` of cycles, the first one now (or one interval after the last); returns the changes."""
        if self.evaluated_at == self.now:
            self.skip(INTERVAL)
        changes, end = [], self.now + timedelta(seconds=seconds)
        while True:
            changes += rules.evaluate(make_cycle())
            self.evaluated_at = self.now
            if self.now + timedelta(seconds=INTERVAL) > end:
                return changes
            self.skip(INTERVAL)

    def step(self, make_cycle) -> list:
        """The next cycle, one interval after the last."""
        return self.run(0, make_cycle)


@pytest.fixture
def clock(time_machine, db):
    return Clock(time_machine)


@pytest.fixture
def rule_settings(db):
    return TelemetryRules.objects.get(pk=1)


def open_incident(rule: str) -> Incident | None:
    """The open incident of a rule (the last part of its source, e.g. "gpu-memory")."""
    return Incident.objects.open().filter(source__regex=rf"^telemetry:.*:{rule}(:\d+)?$").first()


def incidents(rule: str):
    return Incident.objects.filter(source__regex=rf"^telemetry:.*:{rule}(:\d+)?$").order_by("opened_at")


def queued_control_tasks(engine: Engine) -> int:
    """Messages waiting in the engine's host queue (the Celery broker is the test's Redis)."""
    return rd.client().llen(f"{settings.REDIS_PREFIX}:celery:{host_queue(engine.host)}")
