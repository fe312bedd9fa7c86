"""Small history charts for the dashboard, drawn as SVG polylines on the server."""

from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

from .models import DiskSample

WIDTH, HEIGHT = 240, 40


def disk_sparklines(filesystems, hours: int = 1, buckets: int = 60) -> dict[int, str]:
    """Map filesystem id -> SVG polyline points of its usage over the last hours.

    Samples are averaged into fixed time buckets, so the chart costs the same
    whatever the check interval.
    """
    now = timezone.now()
    start = now - timedelta(hours=hours)
    span = (now - start).total_seconds()
    sums: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = DiskSample.objects.filter(filesystem__in=filesystems, at__gte=start).values_list(
        "filesystem_id", "at", "percent"
    )
    for fs_id, at, percent in rows:
        bucket = min(buckets - 1, int((at - start).total_seconds() / span * buckets))
        sums[fs_id][bucket].append(percent)
    lines = {}
    for fs_id, by_bucket in sums.items():
        points = []
        for bucket in sorted(by_bucket):
            values = by_bucket[bucket]
            x = bucket * WIDTH / (buckets - 1)
            y = HEIGHT - (sum(values) / len(values)) * HEIGHT / 100
            points.append(f"{x:.1f},{y:.1f}")
        if len(points) > 1:  # one point draws no line
            lines[fs_id] = " ".join(points)
    return lines
