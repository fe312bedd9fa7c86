"""Telemetry series: raw samples, 1-minute averages, retention, all editable without a restart."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from monitoring.models import EngineSample, GpuSample, HostSample, Resolution, TelemetrySettings
from monitoring.telemetry import store
from tests.support.telemetry import cycle

pytestmark = pytest.mark.django_db
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def store_every_10_s(minutes: int, **values):
    for i in range(minutes * 6):
        store.save(cycle(START + timedelta(seconds=10 * i), **values))


def test_each_cycle_is_one_row_per_subject():
    store.save(cycle(START))
    assert (GpuSample.objects.count(), EngineSample.objects.count(), HostSample.objects.count()) == (1, 1, 1)
    assert GpuSample.objects.get().resolution == Resolution.RAW


def test_complete_minutes_are_averaged_once():
    for i in range(12):  # 12:00:00 .. 12:01:50, utilisation 0, 10, .. 110
        store.save(cycle(START + timedelta(seconds=10 * i), used=i * 2, util=i * 10.0, tps=None if i % 2 else 4.0))
    with time_machine.travel(START + timedelta(minutes=1, seconds=20), tick=False):
        assert store.downsample() == 3  # the first minute of gpu, engine, host; the second is still filling
        assert store.downsample() == 0  # repeating it writes nothing
    minute = GpuSample.objects.get(resolution=Resolution.MINUTE)
    assert minute.at == START
    assert minute.utilization == pytest.approx(25.0) and minute.memory_used == 5 and minute.uuid == "GPU-a"
    engine = EngineSample.objects.get(resolution=Resolution.MINUTE)
    assert engine.generation_tokens_per_s == pytest.approx(4.0)  # unknown readings do not count as 0
    assert engine.ttft_p95 is None
    with time_machine.travel(START + timedelta(minutes=2, seconds=20), tick=False):
        assert store.downsample() == 3
    assert list(GpuSample.objects.filter(resolution=Resolution.MINUTE).values_list("at", flat=True)) == [
        START, START + timedelta(minutes=1)]


def test_raw_samples_expire_after_their_hours_and_averages_after_their_days():
    store_every_10_s(3)
    with time_machine.travel(START + timedelta(minutes=4), tick=False):
        store.downsample()
    assert GpuSample.objects.filter(resolution=Resolution.MINUTE).count() == 3
    with time_machine.travel(START + timedelta(hours=24, minutes=1, seconds=30), tick=False):
        store.prune()  # 24 h later: the first 1.5 minutes of raw samples are gone, the averages stay
    assert GpuSample.objects.filter(resolution=Resolution.RAW).count() == 18 - 9
    assert GpuSample.objects.filter(resolution=Resolution.MINUTE).count() == 3
    with time_machine.travel(START + timedelta(days=30, minutes=2), tick=False):
        store.prune()
    assert GpuSample.objects.filter(resolution=Resolution.MINUTE).count() == 1
    assert HostSample.objects.count() == 1 and EngineSample.objects.count() == 1


def test_retention_is_read_at_each_run():
    store_every_10_s(1)
    config = TelemetrySettings.load()
    config.raw_retention_hours = 1
    config.save()
    with time_machine.travel(START + timedelta(hours=1, minutes=2), tick=False):
        deleted = store.prune()
    assert deleted == 3 * 6 and not GpuSample.objects.exists()


def test_deletes_go_in_bounded_batches(monkeypatch):
    monkeypatch.setattr(store, "DELETE_BATCH", 4)
    monkeypatch.setattr(store, "MAX_BATCHES", 2)
    store_every_10_s(2)  # 12 rows per table
    with time_machine.travel(START + timedelta(days=2), tick=False):
        assert store.prune() == 3 * 8  # one run removes at most 2 batches of 4 per table
        assert store.prune() == 3 * 4
    assert not HostSample.objects.exists()


def test_a_long_outage_is_caught_up_in_bounded_runs(monkeypatch):
    monkeypatch.setattr(store, "CATCH_UP", timedelta(minutes=2))
    store_every_10_s(5)
    with time_machine.travel(START + timedelta(minutes=10), tick=False):
        counts = [store.downsample() for _ in range(4)]
    assert counts == [6, 6, 3, 0]


def test_the_sampling_interval_is_applied_to_the_beat_schedule():
    task = PeriodicTask.objects.get(name="Sample telemetry on local")  # the migration's, for this host
    assert (task.interval.every, task.expire_seconds) == (10, 9)
    config = TelemetrySettings.load()
    config.sample_interval_seconds = 30
    config.save()
    task.refresh_from_db()
    assert (task.interval.every, task.interval.period, task.expire_seconds) == (30, "seconds", 29)
    assert task.task == "monitoring.tasks.sample_telemetry" and task.queue == "engines.local"


def test_settings_are_one_row_edited_in_the_admin(admin_client):
    change = "/admin/monitoring/telemetrysettings/1/change/"
    assert admin_client.get("/admin/monitoring/telemetrysettings/").url == change
    response = admin_client.post("/admin/monitoring/telemetrysettings/1/change/", {
        "sample_interval_seconds": 1, "raw_retention_hours": 48, "minute_retention_days": 90})
    assert "Ensure this value is greater than or equal to 2" in response.content.decode()
    admin_client.post("/admin/monitoring/telemetrysettings/1/change/", {
        "sample_interval_seconds": 15, "raw_retention_hours": 48, "minute_retention_days": 90})
    config = TelemetrySettings.load()
    assert (config.sample_interval_seconds, config.raw_retention_hours, config.minute_retention_days) == (15, 48, 90)
    assert PeriodicTask.objects.get(name="Sample telemetry on local").interval.every == 15
    assert TelemetrySettings.objects.count() == 1
