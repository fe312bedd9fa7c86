"""An orange disk alert starts a cleanup run recorded as triggered by that incident."""

import pytest

from alerts.models import Incident
from glmadmin.celery import app
from glmadmin.lib.disk import Usage
from monitoring import disk_check
from monitoring.models import CleanupRun, WatchedFilesystem
from tests.support.cleanup import future_now, make_file, policy, tree, without_default_policies


@pytest.fixture
def eager(db):
    without_default_policies()
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def reading(monkeypatch, percent):
    monkeypatch.setattr(disk_check.disk, "usage", lambda path: Usage(100, int(percent), 100 - int(percent), percent))


@pytest.mark.django_db
def test_orange_runs_a_cleanup_for_the_policies_on_that_disk(tmp_path, monkeypatch, eager, time_machine,
                                                             no_default_filesystems,
                                                             django_capture_on_commit_callbacks):
    now = future_now()
    time_machine.move_to(now, tick=False)
    cache = tmp_path / "cache"
    make_file(cache, "old.bin", age_hours=200, now=now)
    make_file(cache, "young.bin", age_hours=2, now=now)
    policy(cache, max_size="2G")  # far under its limit: a disk alert removes what is old enough anyway
    fs = WatchedFilesystem.objects.create(path=str(tmp_path), label="data",
                                          yellow_for_seconds=0, orange_for_seconds=0)  # every level at once

    reading(monkeypatch, 86.0)
    with django_capture_on_commit_callbacks(execute=True):
        disk_check.check_filesystem(fs)
    assert not CleanupRun.objects.exists()  # yellow: no cleanup

    reading(monkeypatch, 93.0)
    with django_capture_on_commit_callbacks(execute=True):
        disk_check.check_filesystem(fs)
    run = CleanupRun.objects.get(kind=CleanupRun.Kind.CACHE)
    assert run.trigger == CleanupRun.Trigger.INCIDENT
    assert run.incident == Incident.objects.get(source=fs.source, level="orange")
    assert tree(cache) == {"young.bin"} and run.files_removed == 1


@pytest.mark.django_db
def test_a_simulated_alert_removes_nothing(tmp_path, eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        disk_check.simulate("orange")
    assert not CleanupRun.objects.exists()
