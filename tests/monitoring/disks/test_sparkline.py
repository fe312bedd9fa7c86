"""The filesystem table's "last hour" sparkline: the same line the Disk chart of the last hour draws."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import DiskSample, WatchedFilesystem
from monitoring.telemetry import charts


def checked(fs: WatchedFilesystem, minutes: int, now):
    """Disk checks every 10 s over the last minutes, usage climbing from 40 % by 0.1 point a check."""
    DiskSample.objects.bulk_create(
        DiskSample(filesystem=fs, at=now - timedelta(seconds=10 * i), percent=40 + 0.1 * (minutes * 6 - i),
                   used_bytes=0, total_bytes=1) for i in range(minutes * 6, 0, -1))


def sparkline(page: str, fs: WatchedFilesystem) -> str:
    row = page[page.index(f'data-fs="{fs.pk}"'):]
    return row[:row.index("</tr>")]


@pytest.mark.django_db
def test_sparkline_is_the_hour_charts_disk_line(admin_client, no_default_filesystems, time_machine):
    now = timezone.now()
    time_machine.move_to(now, tick=False)
    models = WatchedFilesystem.objects.create(path="/models", label="models")
    idle = WatchedFilesystem.objects.create(path="/scratch", label="scratch")
    checked(models, 30, now)
    checked(models, 90, now - timedelta(hours=2))  # older than the hour: not drawn

    row = sparkline(admin_client.get("/").content.decode(), models)
    # The line comes after the threshold lines.
    path = re.search(r'<svg class="spark" viewBox="0 0 240 60"[^>]*>.*?<path d="([^"]+)"', row)
    assert path and path.group(1).count("L") > 30  # one unbroken line across the half hour of checks
    assert 'class="threshold threshold-red" x1="0" x2="240" y1="97.0"' in row  # its own thresholds, as lines
    disk_chart = next(chart for chart in charts.build("hour", now) if chart["key"] == "disk")
    assert path.group(1) == next(line["path"] for line in disk_chart["lines"] if line["label"] == "models")
    assert "no data" in sparkline(admin_client.get("/").content.decode(), idle)
