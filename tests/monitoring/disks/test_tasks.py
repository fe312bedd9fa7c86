import pytest
from django_celery_beat.models import PeriodicTask

from glmadmin.celery import app
from glmadmin.lib.redis import single_flight
from monitoring.models import DiskSample, WatchedFilesystem
from monitoring.tasks import check_disks, prune_history


@pytest.mark.django_db
def test_every_schedule_expires_before_its_next_run():
    tasks = PeriodicTask.objects.filter(task__regex=r"^(alerts|monitoring)\.")
    assert {t.task for t in tasks} == {"monitoring.tasks.check_disks", "monitoring.tasks.prune_history",
                                       "alerts.tasks.repeat_red_alerts",
                                       "alerts.tasks.redeliver_stalled_notifications",
                                       "alerts.tasks.release_silences",
                                       "monitoring.tasks.run_cleanup", "monitoring.tasks.measure_cache",
                                       "monitoring.tasks.watch_telemetry_flow",
                                       "monitoring.tasks.sample_telemetry", "monitoring.tasks.downsample_telemetry"}
    for task in tasks:
        assert 0 < task.expire_seconds < task.interval.every, task.name
    assert PeriodicTask.objects.get(task="monitoring.tasks.check_disks").interval.every == 10


@pytest.mark.django_db
def test_every_schedule_names_a_registered_task():
    # A beat row whose task name Celery does not know is silently never run.
    app.loader.import_default_modules()  # what a worker does when it starts
    names = set(PeriodicTask.objects.exclude(task="celery.backend_cleanup").values_list("task", flat=True))
    assert names and names <= set(app.tasks), names - set(app.tasks)


@pytest.mark.django_db
def test_check_runs_once_at_a_time_on_each_host(no_default_filesystems, tmp_path, settings):
    settings.GLMADMIN_HOST_NAME = "local"
    WatchedFilesystem.objects.create(path=str(tmp_path), label="tmp")
    with single_flight("check-disks:gpu2", ttl_seconds=60) as acquired:  # another host's check is no obstacle
        assert acquired
        assert check_disks.apply().get() == "checked 1 filesystem(s) on local"
    with single_flight("check-disks:local", ttl_seconds=60) as acquired:
        assert acquired
        assert check_disks.apply().get() == "skipped: another check is running"
        assert DiskSample.objects.count() == 1
    assert check_disks.apply().get() == "checked 1 filesystem(s) on local"
    assert DiskSample.objects.count() == 2


@pytest.mark.django_db
def test_prune_keeps_recent_samples(no_default_filesystems, tmp_path, time_machine, settings):
    settings.DISK_SAMPLE_RETENTION_HOURS = 24
    WatchedFilesystem.objects.create(path=str(tmp_path), label="tmp")
    time_machine.move_to("2026-01-01 00:00Z", tick=False)
    check_disks.apply()
    time_machine.move_to("2026-01-01 20:00Z", tick=False)
    check_disks.apply()
    time_machine.move_to("2026-01-02 01:00Z", tick=False)
    assert prune_history.apply().get() == "deleted 1 disk sample(s)"
    assert DiskSample.objects.count() == 1
