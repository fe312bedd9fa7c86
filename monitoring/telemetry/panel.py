"""The telemetry part of the live state: each host's latest cycle as plain JSON for the pages.

Read on every page view and every publish, so it reads only Redis (the
samplers' latest cycles, one hash) and two small tables. The charts are not part of the
state (a new cycle changes the state anyway): they are drawn into the HTML only.
"""

from django.utils import timezone

from inference.models import Engine

from ..models import TelemetrySettings
from . import chart_view, charts, latest

STALE_AFTER_CYCLES = 3


def state() -> dict:
    """Every host's latest cycle (a group of GPU cards per host) and the engines of all hosts in one table."""
    cycles = latest.load_all()
    if not cycles:
        return {"sampled": False}
    names = dict(Engine.objects.values_list("pk", "name"))
    interval = TelemetrySettings.load().sample_interval_seconds
    engines = [_engine(e, names, cycle.host_name) for cycle in cycles.values() for e in cycle.engines]
    return {
        "sampled": True,
        "multi_host": len(cycles) > 1,
        "hosts": [_host(cycle, names, interval) for cycle in cycles.values()],
        "engines": sorted(engines, key=lambda e: (e["name"], e["host"])),
    }


def _host(cycle, names, interval: int) -> dict:
    age = (timezone.now() - cycle.taken_at).total_seconds()
    health = {h.index: _health(h) for h in cycle.gpu_health}
    host = cycle.host
    return {
        "name": cycle.host_name,
        "taken_at": cycle.taken_at.isoformat(),
        "stale": age > STALE_AFTER_CYCLES * interval + 5,
        "gpu_status": cycle.gpu_status,
        "gpus": [_gpu(gpu, names, health.get(gpu.index)) for gpu in cycle.gpus],
        # Also shown while NVML fails as a whole: which GPU stopped answering.
        "health": list(health.values()),
        "cpu_percent": host.cpu_percent, "memory_used": host.memory_used, "memory_total": host.memory_total,
        "memory_percent": round(100 * host.memory_used / host.memory_total, 1) if host.memory_total else None,
    }


def _health(health) -> dict:
    return {"index": health.index, "state": health.state, "signals": health.signals,
            "findings": [{"signal": f.signal, "state": f.state, "detail": f.detail, "action": f.action}
                         for f in health.findings]}


def _gpu(gpu, names, health: dict | None) -> dict:
    return {
        "health": health,
        "index": gpu.index, "name": gpu.name, "uuid": gpu.uuid, "memory_used": gpu.memory_used,
        "memory_total": gpu.memory_total, "memory_percent": round(gpu.memory_percent, 1),
        "utilization": gpu.utilization, "temperature": gpu.temperature, "power_draw": gpu.power_draw,
        "power_limit": gpu.power_limit,
        "processes": [{"pid": p.pid, "name": p.name, "used_bytes": p.used_bytes,
                       "engine": None if p.engine_id is None else names.get(p.engine_id, f"engine {p.engine_id}")}
                      for p in gpu.processes],
    }


def _engine(reading, names, host: str) -> dict:
    return {
        "id": reading.engine_id, "name": names.get(reading.engine_id, f"engine {reading.engine_id}"), "host": host,
        "gpus": list(reading.gpus), "kv_cache_usage": reading.kv_cache_usage,
        "requests_running": reading.requests_running, "requests_waiting": reading.requests_waiting,
        "ttft_p50": reading.ttft_p50, "ttft_p95": reading.ttft_p95,
        "generation_tokens_per_s": reading.generation_tokens_per_s,
        "prefix_cache_hit_rate": reading.prefix_cache_hit_rate, "rss_bytes": reading.rss_bytes,
        "error": reading.metrics_error,
    }


def context(telemetry: dict) -> dict:
    """What partials/telemetry.html draws: the state and the charts the sampler left."""
    return {"telemetry": telemetry, "charts": chart_view.decorate(charts.cached())}
