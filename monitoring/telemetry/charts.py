"""The dashboard's telemetry charts: SVG paths drawn on the server from the stored series.

Server-drawn SVG rather than a charting library: the lines, axes and
threshold lines are drawn once per cycle for every open page, arrive in the
live message like any other card, and need no third-party JavaScript in the
repository (nor a CDN). The values on hover are the bucket averages the lines
are drawn from (each line's "values"), shown by a few lines of charts.js.

Samples are averaged into fixed time buckets, so a chart costs the same
whatever the sampling interval; the last hour reads the raw samples, the last
day the 1-minute averages. Charts are computed once per cycle by the sampler
(and the day charts once a minute) and kept in Redis, so a page view or a live
publish never queries the series. The filesystem table's "last hour" sparklines
are drawn here too, like the hour charts, but per view: disk checks are not
telemetry cycles.
"""

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from redis.exceptions import RedisError

from glmadmin.lib import redis as rd
from inference.models import Engine

from ..models import DiskSample, EngineSample, GpuSample, Resolution, WatchedFilesystem

WIDTH, HEIGHT = 240, 60
RANGES = {"hour": (timedelta(hours=1), Resolution.RAW, 120), "day": (timedelta(days=1), Resolution.MINUTE, 144)}
KEEP_SECONDS = 3600
COLOURS = 8  # series-0 .. series-7 in app.css


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    percent: bool  # 0-100 axis; else scaled to the largest value shown


METRICS = (
    Metric("gpu_memory", "GPU memory", "%", True),
    Metric("gpu_util", "GPU utilisation", "%", True),
    Metric("kv_cache", "KV cache", "%", True),
    Metric("ttft_p95", "TTFT p95", "s", False),
    Metric("tokens_per_s", "Tokens/s", "tok/s", False),
    Metric("disk", "Disk", "%", True),
)


def series(since, resolution) -> dict[str, dict[str, list[tuple]]]:
    """metric key -> subject label -> [(at, value)] since `since`."""
    out: dict[str, dict[str, list[tuple]]] = defaultdict(lambda: defaultdict(list))
    gpu_rows = list(GpuSample.objects.filter(resolution=resolution, at__gte=since).values_list(
        "host", "index", "at", "memory_used", "memory_total", "utilization"))
    several_hosts = len({row[0] for row in gpu_rows}) > 1
    for host, index, at, used, total, util in gpu_rows:
        label = f"{host} GPU {index}" if several_hosts else f"GPU {index}"
        out["gpu_memory"][label].append((at, 100.0 * used / total if total else None))
        out["gpu_util"][label].append((at, util))
    names = dict(Engine.objects.values_list("pk", "name"))
    engine_rows = EngineSample.objects.filter(resolution=resolution, at__gte=since).values_list(
        "engine_id", "at", "kv_cache_usage", "ttft_p95", "generation_tokens_per_s")
    for engine_id, at, kv, ttft, tps in engine_rows:
        label = names.get(engine_id, f"engine {engine_id}")
        for key, value in (("kv_cache", kv), ("ttft_p95", ttft), ("tokens_per_s", tps)):
            out[key][label].append((at, value))
    labels = dict(WatchedFilesystem.objects.values_list("pk", "label"))
    for fs_id, points in disk_series(since).items():
        out["disk"][labels.get(fs_id, str(fs_id))].extend(points)
    return out


def disk_series(since, filesystems=None) -> dict[int, list[tuple]]:
    """filesystem id -> [(at, percent)] since `since`, of the given filesystems or all of them."""
    rows = DiskSample.objects.filter(at__gte=since)
    if filesystems is not None:
        rows = rows.filter(filesystem__in=filesystems)
    out: dict[int, list[tuple]] = defaultdict(list)
    for fs_id, at, percent in rows.values_list("filesystem_id", "at", "percent"):
        out[fs_id].append((at, percent))
    return out


def disk_sparklines(filesystems, now=None) -> dict[int, str]:
    """filesystem id -> the SVG path of its usage over the last hour, bucketed and drawn as the hour charts are."""
    span, _, buckets = RANGES["hour"]
    start = (now or timezone.now()) - span
    return {fs_id: _path(_buckets(points, start, span, buckets), buckets, 100.0)
            for fs_id, points in disk_series(start, filesystems).items()}


def build(range_name: str, now=None) -> list[dict]:
    """One chart per metric over the range: its subjects' SVG paths, axis maximum and latest values."""
    span, resolution, buckets = RANGES[range_name]
    now = now or timezone.now()
    start = now - span
    data = series(start, resolution)
    charts = []
    for metric in METRICS:
        subjects = data.get(metric.key, {})
        averaged = {label: _buckets(points, start, span, buckets) for label, points in sorted(subjects.items())}
        top = 100.0 if metric.percent else _nice_max(v for b in averaged.values() for v in b.values())
        lines = [{"label": label, "path": _path(by_bucket, buckets, top), "last": _last(subjects[label]),
                  "values": [_round(by_bucket.get(b)) for b in range(buckets)]}
                 for label, by_bucket in averaged.items()]
        drawn = [{**line, "colour": i % COLOURS} for i, line in enumerate(line for line in lines if line["path"])]
        charts.append({"key": metric.key, "title": metric.title, "unit": metric.unit, "max": top,
                       "range": range_name, "lines": drawn, "start": start.timestamp(),
                       "span": span.total_seconds(), "buckets": buckets})
    return charts


def _round(value: float | None) -> float | None:
    """Three significant digits: what a hover shows, and a small live message."""
    return None if value is None else float(f"{value:.3g}")


def _buckets(points, start, span, buckets) -> dict[int, float]:
    sums: dict[int, list[float]] = defaultdict(list)
    for at, value in points:
        if value is not None:
            bucket = min(buckets - 1, max(0, int((at - start) / span * buckets)))
            sums[bucket].append(value)
    return {b: sum(v) / len(v) for b, v in sums.items()}


def _path(by_bucket: dict[int, float], buckets: int, top: float) -> str:
    """An SVG path; an empty bucket (no samples, e.g. the engine was down) breaks the line."""
    parts, previous = [], None
    for bucket in sorted(by_bucket):
        x = bucket * WIDTH / (buckets - 1)
        y = HEIGHT - min(by_bucket[bucket], top) * HEIGHT / top
        parts.append(f"{'L' if previous == bucket - 1 else 'M'}{x:.1f},{y:.1f}")
        previous = bucket
    if len(parts) == 1:  # a lone point draws nothing: make it a dot
        parts.append("l0.1,0")
    return " ".join(parts)


def _last(points) -> float | None:
    values = [v for _, v in sorted(points, key=lambda p: p[0]) if v is not None]
    return values[-1] if values else None


def _nice_max(values) -> float:
    """The axis top: the largest value rounded up to 1, 2 or 5 times a power of ten."""
    top = max(values, default=0.0)
    if top <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(top))
    return next(step * magnitude for step in (1, 2, 5, 10) if top <= step * magnitude * (1 + 1e-9))


def refresh(now=None) -> dict:
    """Recompute the hour charts, and the day charts when their minute has passed; keep both in Redis."""
    now = now or timezone.now()
    client = rd.client()
    day_key = rd.key("telemetry", "charts", "day", now.strftime("%Y%m%d%H%M"))
    day = client.get(day_key)
    if day is None:
        day = json.dumps(build("day", now))
        client.set(day_key, day, ex=120)
    charts = {"hour": build("hour", now), "day": json.loads(day)}
    client.set(rd.key("telemetry", "charts"), json.dumps(charts), ex=KEEP_SECONDS)
    return charts


def cached() -> dict:
    try:
        raw = rd.client().get(rd.key("telemetry", "charts"))
    except RedisError:  # the charts are drawn from Redis only: without it the page shows none (and says why)
        return {"hour": [], "day": []}
    return json.loads(raw) if raw else {"hour": [], "day": []}
