"""Telemetry as time series: each cycle stored raw, averaged per minute, both pruned by age.

Cheap enough to run for ever on SQLite and PostgreSQL: one bulk insert per
table per cycle, every query bounded by an indexed time range, and deletes in
batches so neither database holds a long lock or a huge transaction.
"""

from datetime import UTC, timedelta

from django.db.models import Avg, Max
from django.db.models.functions import TruncMinute
from django.utils import timezone

from ..models import EngineSample, GpuSample, HostSample, Resolution, TelemetrySettings
from .readings import Cycle

DELETE_BATCH = 5000
MAX_BATCHES = 40  # per table and run: 200,000 rows; a larger backlog is worked off by the next runs
LATE = timedelta(seconds=15)
CATCH_UP = timedelta(hours=6)  # minutes averaged per run at most, after a long outage

# Per table: the columns that identify a series, and the columns averaged.
SERIES = {
    GpuSample: (("host", "index"), ("memory_used", "memory_total", "utilization", "temperature", "power_draw",
                             "power_limit")),
    EngineSample: (("engine_id",), ("kv_cache_usage", "requests_running", "requests_waiting", "ttft_p50",
                                    "ttft_p95", "generation_tokens_per_s", "prefix_cache_hit_rate", "rss_bytes")),
    HostSample: (("host",), ("cpu_percent", "memory_used", "memory_total")),
}
INTEGERS = {"memory_used", "memory_total", "rss_bytes"}


def save(cycle: Cycle) -> None:
    at = cycle.taken_at
    GpuSample.objects.bulk_create([
        GpuSample(at=at, host=cycle.host_name, index=g.index, uuid=g.uuid, memory_used=g.memory_used,
                  memory_total=g.memory_total, utilization=g.utilization, temperature=g.temperature,
                  power_draw=g.power_draw, power_limit=g.power_limit)
        for g in cycle.gpus])
    EngineSample.objects.bulk_create([
        EngineSample(at=at, engine_id=e.engine_id, kv_cache_usage=e.kv_cache_usage,
                     requests_running=e.requests_running, requests_waiting=e.requests_waiting,
                     ttft_p50=e.ttft_p50, ttft_p95=e.ttft_p95, generation_tokens_per_s=e.generation_tokens_per_s,
                     prefix_cache_hit_rate=e.prefix_cache_hit_rate, rss_bytes=e.rss_bytes)
        for e in cycle.engines])
    HostSample.objects.create(at=at, host=cycle.host_name, cpu_percent=cycle.host.cpu_percent,
                              memory_used=cycle.host.memory_used, memory_total=cycle.host.memory_total)


def downsample(now=None) -> int:
    """Average every complete minute not yet averaged; returns the rows written. Safe to repeat."""
    # The current minute is still filling, and a cycle taken just before the minute turned may
    # not be committed yet: minutes are averaged once they are LATE old.
    end = _minute((now or timezone.now()) - LATE)
    return sum(_downsample(model, end) for model in SERIES)


def _downsample(model, end) -> int:
    keys, columns = SERIES[model]
    raw = model.objects.filter(resolution=Resolution.RAW)
    done = model.objects.filter(resolution=Resolution.MINUTE).aggregate(last=Max("at"))["last"]
    start = done + timedelta(minutes=1) if done else raw.order_by("at").values_list("at", flat=True).first()
    if start is None or start >= end:
        return 0
    start = _minute(start)
    end = min(end, start + CATCH_UP)
    rows = (raw.filter(at__gte=start, at__lt=end)
            .annotate(minute=TruncMinute("at", tzinfo=UTC)).values("minute", *keys)
            .annotate(**{f"avg_{c}": Avg(c) for c in columns}).order_by())
    minutes = []
    for row in rows:
        values = {c: _round(c, row[f"avg_{c}"]) for c in columns}
        minutes.append(model(at=row["minute"], resolution=Resolution.MINUTE, **{k: row[k] for k in keys}, **values))
    if model is GpuSample:  # the uuid is not averaged: the latest in the range names the GPU
        uuids = {(host, index): uuid for host, index, uuid in
                 raw.filter(at__gte=start, at__lt=end).values_list("host", "index", "uuid").distinct()}
        for sample in minutes:
            sample.uuid = uuids.get((sample.host, sample.index), "")
    # A crash between insert and the next run repeats a minute: the unique constraint drops the copy.
    model.objects.bulk_create(minutes, ignore_conflicts=True)
    return len(minutes)


def prune(now=None) -> int:
    """Delete samples past their retention, in bounded batches; returns the rows deleted."""
    now = now or timezone.now()
    config = TelemetrySettings.load()
    cutoffs = {Resolution.RAW: now - timedelta(hours=config.raw_retention_hours),
               Resolution.MINUTE: now - timedelta(days=config.minute_retention_days)}
    deleted = 0
    for model in SERIES:
        for resolution, cutoff in cutoffs.items():
            deleted += _delete_older(model, resolution, cutoff)
    return deleted


def _delete_older(model, resolution: str, cutoff) -> int:
    deleted = 0
    old = model.objects.filter(resolution=resolution, at__lt=cutoff)
    for _ in range(MAX_BATCHES):
        ids = list(old.values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            break
        deleted += model.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < DELETE_BATCH:
            break
    return deleted


def _minute(at):
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _round(column: str, value):
    if value is None:
        return None
    return round(value) if column in INTEGERS else value
