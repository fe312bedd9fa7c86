"""The platform's view for Prometheus: GPUs, engines, host, disks and open incidents.

Read from what the sampler stored (the latest cycle in Redis) and the
database, so a scrape never waits on NVML or on an engine.
"""

import logging

from django.db.models import Count
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from alerts.levels import Level
from alerts.models import Incident
from glmadmin import exporter
from inference.models import Engine, EngineState

from ..models import WatchedFilesystem
from . import gpu_verdict, latest

log = logging.getLogger(__name__)

GPU_FIELDS = (  # reading attribute, metric name, help
    ("memory_used", "gpu_memory_used_bytes", "GPU memory in use"),
    ("memory_total", "gpu_memory_total_bytes", "GPU memory in all"),
    ("utilization", "gpu_utilization_percent", "Percent of time a kernel ran on the GPU"),
    ("temperature", "gpu_temperature_celsius", "GPU temperature"),
    ("power_draw", "gpu_power_watts", "GPU power draw"),
    ("power_limit", "gpu_power_limit_watts", "GPU enforced power limit"),
)
ENGINE_FIELDS = (
    ("kv_cache_usage", "engine_kv_cache_usage_percent", "KV cache in use"),
    ("requests_running", "engine_requests_running", "Requests being generated"),
    ("requests_waiting", "engine_requests_waiting", "Requests queued"),
    ("ttft_p50", "engine_ttft_p50_seconds", "Time to first token, median over the last sampling interval"),
    ("ttft_p95", "engine_ttft_p95_seconds", "Time to first token, 95th percentile over the last sampling interval"),
    ("generation_tokens_per_s", "engine_generation_tokens_per_second", "Tokens generated per second, last interval"),
    ("prefix_cache_hit_rate", "engine_prefix_cache_hit_percent", "Prefix cache hits per query, last interval"),
    ("rss_bytes", "engine_rss_bytes", "Resident memory of the engine's process group"),
)


def _gauge(name: str, doc: str, labels=()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"glmadmin_{name}", doc, labels=list(labels))


class PlatformCollector:
    def collect(self):
        yield from self._telemetry()
        yield from self._engines_state()
        yield from self._disks()
        yield from self._incidents()

    def _telemetry(self):
        """Every series carries the host that sampled it (GLMADMIN_HOST_NAME)."""
        cycles = list(latest.load_all().values())
        if not cycles:
            return
        taken = _gauge("telemetry_sampled_timestamp_seconds", "When the latest telemetry cycle was taken", ["host"])
        ok = _gauge("gpu_nvml_ok", "1 when NVML answered in the latest cycle, 0 without GPU or on an NVML error",
                    ["host", "status"])
        for cycle in cycles:
            taken.add_metric([cycle.host_name], cycle.taken_at.timestamp())
            ok.add_metric([cycle.host_name, cycle.gpu_status or "ok"], 0 if cycle.gpu_status else 1)
        yield from (taken, ok)
        for attribute, name, doc in GPU_FIELDS:
            family = _gauge(name, doc, ("host", "gpu", "uuid", "name"))
            for cycle in cycles:
                for gpu in cycle.gpus:
                    value = getattr(gpu, attribute)
                    if value is not None:
                        family.add_metric([cycle.host_name, str(gpu.index), gpu.uuid, gpu.name], value)
            yield family
        yield from _gpu_health(cycles)
        names = dict(Engine.objects.values_list("pk", "name"))
        procs = _gauge("gpu_process_memory_bytes", "GPU memory held by a process",
                       ["host", "gpu", "pid", "name", "engine"])
        for cycle in cycles:
            for gpu in cycle.gpus:
                for p in gpu.processes:
                    engine = names.get(p.engine_id, "") if p.engine_id is not None else "foreign"
                    procs.add_metric([cycle.host_name, str(gpu.index), str(p.pid), p.name, engine], p.used_bytes or 0)
        yield procs
        for attribute, name, doc in ENGINE_FIELDS:
            family = _gauge(name, doc, ["engine", "host"])
            for cycle in cycles:
                for reading in cycle.engines:
                    value = getattr(reading, attribute)
                    if value is not None:
                        family.add_metric([names.get(reading.engine_id, str(reading.engine_id)), cycle.host_name],
                                          value)
            yield family
        for name, doc, attribute in (("host_cpu_percent", "Host CPU use, all cores", "cpu_percent"),
                                     ("host_memory_used_bytes", "Host memory in use", "memory_used"),
                                     ("host_memory_total_bytes", "Host memory in all", "memory_total")):
            family = _gauge(name, doc, ["host"])
            for cycle in cycles:
                value = getattr(cycle.host, attribute)
                if value is not None:
                    family.add_metric([cycle.host_name], value)
            yield family

    def _engines_state(self):
        family = _gauge("engine_state", "1 for the state each engine is in", ["engine", "host", "state"])
        for name, host, state in Engine.objects.values_list("name", "host", "state"):
            for choice in EngineState.values:
                family.add_metric([name, host, choice], 1 if choice == state else 0)
        yield family

    def _disks(self):
        family = _gauge("disk_usage_percent", "Usage of each watched filesystem", ["label", "path"])
        for fs in WatchedFilesystem.objects.filter(enabled=True, last_percent__isnull=False):
            family.add_metric([fs.label, fs.path], fs.last_percent)
        yield family

    def _incidents(self):
        counts = dict(Incident.objects.open().values_list("level").annotate(n=Count("pk")))
        family = _gauge("incidents_open", "Open incidents by level", ["level"])
        for level in Level.values:
            family.add_metric([level], counts.get(level, 0))
        yield family


def _gpu_health(cycles):
    """Issue 19: each GPU's health state (1 for the state it is in) and each finding that makes it so."""
    state = _gauge("gpu_health_state", "1 for the health state each GPU is in (ok, degraded, failing)",
                   ["host", "gpu", "state"])
    findings = _gauge("gpu_health_finding", "1 for each signal that makes a GPU degraded or failing",
                      ["host", "gpu", "signal", "state"])
    for cycle in cycles:
        for health in cycle.gpu_health:
            for choice in (gpu_verdict.OK, gpu_verdict.DEGRADED, gpu_verdict.FAILING):
                state.add_metric([cycle.host_name, str(health.index), choice], 1 if choice == health.state else 0)
            for signal, level in dict.fromkeys((f.signal, f.state) for f in health.findings):  # one series each
                findings.add_metric([cycle.host_name, str(health.index), signal, level], 1)
    yield from (state, findings)


class _Guarded:
    """One broken collector costs its own metrics, not the whole scrape."""

    def __init__(self, collector):
        self.collector = collector

    def collect(self):
        try:
            yield from list(self.collector.collect())
        except Exception:
            log.exception("metrics collector %r failed", self.collector)


def render() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    for collector in [PlatformCollector(), *exporter.collectors()]:
        registry.register(_Guarded(collector))
    return generate_latest(registry)
