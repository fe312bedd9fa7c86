"""One sampling cycle of this host: its GPUs (NVML), its engines (/metrics) and the host itself (psutil)."""

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
from django.conf import settings
from django.utils import timezone

from glmadmin.lib import deadline, nvml
from glmadmin.lib import redis as rd
from inference import engine_client
from inference.models import Engine, EngineState

from . import engine_metrics, gpu_health_cycle
from .process_table import EngineProcess, ProcessTable
from .readings import Cycle, EngineReading, GpuProcess, GpuReading, HostReading

log = logging.getLogger(__name__)

# Engines whose /metrics should answer; the others are only measured (their memory) while they have a pid.
SCRAPED = {EngineState.READY, EngineState.DRAINING, EngineState.UNHEALTHY}
_cpu_primed = False
NVML_KEY = "nvml-read"
NVML_SECONDS = 5.0


def take_cycle() -> Cycle:
    """This host's cycle: NVML and /proc are local, so each host samples itself (in its own queue)."""
    host = settings.GLMADMIN_HOST_NAME
    engines = list(Engine.objects.filter(host=host, pid__isnull=False))
    table = ProcessTable([EngineProcess(e.pk, e.pid, e.process_started_at) for e in engines])
    gpus, gpu_status = read_gpus(table)
    return Cycle(taken_at=timezone.now(), host_name=host, host=read_host(), gpus=gpus, gpu_status=gpu_status,
                 engines=read_engines(engines, table), gpu_health=read_gpu_health(host, gpus, gpu_status))


def read_gpu_health(host: str, gpus: tuple[GpuReading, ...], gpu_status: str) -> tuple:
    if NVML_KEY in deadline.hung() or gpu_health_cycle.hung():
        return ()  # NVML hangs: asking it for health too would only wait on the hung call
    try:
        return gpu_health_cycle.read(host, gpus, gpu_status)
    except Exception:  # noqa: BLE001 - a broken health read must not cost the cycle's other readings
        log.exception("GPU health not read")
        return ()


def read_gpus(table: ProcessTable) -> tuple[tuple[GpuReading, ...], str]:
    try:
        # A GPU that fell off the bus can hang NVML for good: the read has a deadline, and a read that misses
        # it is a status like any NVML failure (the failing-NVML rule makes it an incident naming the hang).
        snapshot = deadline.run(NVML_KEY, nvml.read, seconds=NVML_SECONDS, what="NVML read")
    except (nvml.NvmlError, deadline.Stalled) as exc:
        log.warning("%s", exc)
        return (), str(exc)
    return tuple(_gpu_reading(gpu, table) for gpu in snapshot.gpus), snapshot.status


def _gpu_reading(gpu: nvml.Gpu, table: ProcessTable) -> GpuReading:
    processes = tuple(GpuProcess(p.pid, p.used_bytes, table.name(p.pid), table.engine_of(p.pid))
                      for p in gpu.processes)
    return GpuReading(index=gpu.index, uuid=gpu.uuid, name=gpu.name, memory_used=gpu.memory_used,
                      memory_total=gpu.memory_total, utilization=gpu.utilization, temperature=gpu.temperature,
                      power_draw=gpu.power_draw, power_limit=gpu.power_limit, processes=processes)


def read_host() -> HostReading:
    global _cpu_primed
    # CPU % is measured since the previous call in this process; the first call has nothing to compare.
    cpu = psutil.cpu_percent(interval=None)
    cpu, _cpu_primed = (cpu if _cpu_primed else None), True
    memory = psutil.virtual_memory()
    return HostReading(cpu_percent=cpu, memory_used=memory.total - memory.available, memory_total=memory.total)


def read_engines(engines: list[Engine], table: ProcessTable) -> tuple[EngineReading, ...]:
    scraped = [e for e in engines if e.state in SCRAPED]
    if len(scraped) > 1:
        # In parallel: a hung engine costs one timeout per cycle, not one per engine.
        with ThreadPoolExecutor(max_workers=min(8, len(scraped))) as pool:
            windows = dict(zip([e.pk for e in scraped], pool.map(engine_window, scraped), strict=True))
    else:  # one engine, the common case, needs no thread pool
        windows = {e.pk: engine_window(e) for e in scraped}
    readings = []
    for engine in engines:
        rss = table.group_rss(engine.pid)
        if rss is None and engine.pk not in windows:
            continue  # not running: nothing to report
        # An engine that is starting or stopping is not asked: its numbers are unknown, which is no error.
        gauges, window, error = windows.get(engine.pk, ({}, engine_metrics.Window(), ""))
        readings.append(EngineReading(
            engine_id=engine.pk, gpus=tuple(engine.gpus), kv_cache_usage=gauges.get("kv_cache_usage"),
            requests_running=gauges.get("requests_running"), requests_waiting=gauges.get("requests_waiting"),
            ttft_p50=window.ttft_p50, ttft_p95=window.ttft_p95,
            generation_tokens_per_s=window.generation_tokens_per_s,
            prefix_cache_hit_rate=window.prefix_cache_hit_rate, rss_bytes=rss, metrics_error=error))
    return tuple(readings)


def engine_window(engine: Engine) -> tuple[dict, engine_metrics.Window, str]:
    """This engine's gauges and the window since its previous scrape (kept in Redis, shared by workers)."""
    try:
        text = engine_client.metrics_text(engine, timeout=settings.TELEMETRY_SCRAPE_TIMEOUT)
        current = engine_metrics.parse(text, time.time())
    except (engine_client.HTTPError, ValueError, KeyError) as exc:
        return {}, engine_metrics.Window(), f"/metrics: {type(exc).__name__}: {exc}"[:200]
    key = rd.key("telemetry", "scrape", str(engine.pk))
    stored = json.dumps({"pid": engine.pid, **current.as_json()})
    raw = rd.client().set(key, stored, ex=settings.TELEMETRY_WINDOW_MAX_SECONDS, get=True)
    previous = _previous(raw, engine.pid)
    return engine_metrics.gauges(current), engine_metrics.window(previous, current), ""


def _previous(raw: str | None, pid: int) -> engine_metrics.Scrape | None:
    if raw is None:
        return None
    data = json.loads(raw)
    if data.get("pid") != pid:  # a new engine process: its counters started again
        return None
    return engine_metrics.Scrape.from_json(data)
