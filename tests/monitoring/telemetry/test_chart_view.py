"""The history charts read as charts: a time axis at the quarter hours, the value axis, the alert thresholds as
lines (or named when above the axis), and the numbers behind each line for the values on hover."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from monitoring.models import DiskSample, TelemetryRules, WatchedFilesystem
from monitoring.telemetry import chart_view, charts


@pytest.mark.django_db
def test_axes_thresholds_and_hover_values(no_default_filesystems, time_machine, settings):
    settings.TIME_ZONE = "UTC"
    now = datetime(2026, 11, 30, 12, 7, tzinfo=UTC)
    time_machine.move_to(now, tick=False)
    fs = WatchedFilesystem.objects.create(path="/models", label="models", orange_percent=90)
    DiskSample.objects.bulk_create(
        DiskSample(filesystem=fs, at=now - timedelta(seconds=30 * i), percent=50.0, used_bytes=0, total_bytes=1)
        for i in range(1, 100))
    TelemetryRules.objects.filter(pk=1).update(ttft_p95_seconds=2.0)

    drawn = chart_view.decorate({"hour": charts.build("hour", now)})["hour"]
    disk = next(chart for chart in drawn if chart["key"] == "disk")
    assert [t["label"] for t in disk["xticks"]] == ["11:15", "11:30", "11:45", "12:00"]
    assert [t["label"] for t in disk["yticks"]] == ["0 %", "50 %", "100 %"]
    assert [(t["text"], t["level"]) for t in disk["thresholds"]] == [
        ("yellow 85 %", "yellow"), ("orange 90 %", "orange"), ("red 97 %", "red")]
    assert disk["thresholds"][1]["y"] == pytest.approx(6.0)  # 90 % of a 0-100 axis 60 high, from the top
    series = json.loads(disk["series"])
    assert series["buckets"] == 120 and series["unit"] == "%"
    (line,) = series["lines"]
    assert line["label"] == "models" and 50.0 in line["values"] and None in line["values"]  # gaps stay gaps
    assert disk["legend"][0]["last_text"] == "50 %"

    ttft = next(chart for chart in drawn if chart["key"] == "ttft_p95")
    assert ttft["thresholds"] == [] and ttft["above"] == ["alert above 2.0 s"]  # above the axis: named instead


def test_latencies_read_in_milliseconds():
    assert chart_view.fmt(0.015, "s") == "15 ms"
    assert chart_view.fmt(2.0, "s") == "2.0 s"
    assert chart_view.fmt(None, "%") == "–"
