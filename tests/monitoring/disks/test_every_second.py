"""The quick check every second: a steady reading touches no database and publishes nothing; a crossing is
written and published by the very run that sees it; a change to the watched filesystem applies at the next run.

On a real tmpfs, through the Watcher the alerts worker's thread runs (monitoring/disk_watch.py), and the thread.
"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.incidents import resolve_by_hand
from alerts.models import Incident
from glmadmin import live
from monitoring import deadman, disk_check, disk_watch
from monitoring.models import DiskSample, WatchedFilesystem
from tests.support import tmpfs as tmpfs_support
from tests.support.processes import wait_for
from tests.support.tmpfs import fill_to

volume = tmpfs_support.volume

pytestmark = [pytest.mark.privileged, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def published(monkeypatch):
    """Every publish the checks make, passed on to the real one: (force, sent)."""
    calls = []
    real = live.publish

    def spy(force=False):
        sent = real(force=force)
        calls.append((force, sent))
        return sent

    monkeypatch.setattr(live, "publish", spy)
    return calls


@pytest.fixture
def watched(no_default_filesystems, volume):
    return WatchedFilesystem.objects.create(path=str(volume), label="vol", yellow_for_seconds=0,
                                            orange_for_seconds=0)


def test_a_steady_reading_touches_no_database_and_publishes_nothing(watched, published):
    watcher = disk_check.Watcher()
    (first,) = watcher.run()  # rows and incidents read; the first reading stored
    assert first.stored and DiskSample.objects.count() == 1
    published.clear()
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            (reading,) = watcher.run()
        assert (reading.level, reading.transition, reading.stored) == (None, None, False)
        assert [q["sql"] for q in queries.captured_queries] == []
    assert published == [] and DiskSample.objects.count() == 1


def test_a_crossing_is_written_and_published_by_the_run_that_sees_it(watched, volume, published):
    watcher = disk_check.Watcher()
    watcher.run()
    published.clear()
    fill_to(volume, 93)
    (reading,) = watcher.run()
    assert (reading.level, reading.transition.kind) == ("orange", "opened")
    assert Incident.objects.open().get(source=watched.source).level == "orange"
    assert published == [(True, True)]  # at once, forced: every open page gets the banner from this run
    assert WatchedFilesystem.objects.get(pk=watched.pk).last_percent == pytest.approx(reading.percent)

    published.clear()
    with CaptureQueriesContext(connection) as queries:
        (again,) = watcher.run()  # still orange: known, nothing to write
    assert (again.transition, queries.captured_queries, published) == (None, [], [])


def test_a_reading_that_moved_is_stored_and_published(watched, volume, published):
    watcher = disk_check.Watcher()
    (before,) = watcher.run()
    published.clear()
    fill_to(volume, 40)  # no threshold, but the pages' percentage is out of date
    (reading,) = watcher.run()
    assert reading.transition is None and reading.stored
    assert WatchedFilesystem.objects.get(pk=watched.pk).last_percent == pytest.approx(reading.percent)
    assert reading.percent - before.percent >= disk_check.SAMPLE_STEP_POINTS
    assert published == [(False, True)]
    assert DiskSample.objects.count() == 2


def test_a_changed_threshold_applies_within_seconds(watched, volume, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    fill_to(volume, 50)
    watcher = disk_check.Watcher()
    assert watcher.run()[0].level is None
    watched.orange_percent, watched.yellow_percent = 45, 40
    watched.save()  # as the admin does: the save bumps the token the Watcher looks at every few seconds
    time_machine.shift(timedelta(seconds=disk_check.CONFIG_CHECK_SECONDS))
    (reading,) = watcher.run()  # long before the rows are read again anyway (RELOAD_SECONDS)
    assert (reading.level, reading.transition.kind) == ("orange", "opened")


def test_a_hand_resolved_incident_opens_again_when_the_incidents_are_read_again(watched, volume, time_machine,
                                                                     django_user_model):
    time_machine.move_to(timezone.now(), tick=False)
    fill_to(volume, 93)
    watcher = disk_check.Watcher()
    assert watcher.run()[0].transition.kind == "opened"
    incident = Incident.objects.open().get(source=watched.source)
    resolve_by_hand(incident, django_user_model.objects.create_user("op"), "cleaned up, I think")
    # The runs in between go by what they know (orange)...
    assert watcher.run()[0].transition is None
    assert not Incident.objects.open().filter(source=watched.source).exists()
    # ... until they read the incidents again: the disk is still at orange.
    time_machine.shift(timedelta(seconds=disk_check.RELOAD_SECONDS))
    (reading,) = watcher.run()
    assert (reading.level, reading.transition.kind) == ("orange", "opened")
    assert Incident.objects.open().get(source=watched.source).pk != incident.pk


def test_the_thread_opens_the_incident_within_its_interval(watched, volume):
    loop = disk_watch.Loop(every=0.2).start()
    try:
        wait_for(lambda: loop.runs >= 2, 30, "the quick checks to run")
        assert not Incident.objects.open().filter(source=watched.source).exists()
        # The dead man's switch is told they run (its banner then says alerts are still raised).
        assert deadman.quick_checks_run(settings.GLMADMIN_HOST_NAME)
        filled = timezone.now()
        fill_to(volume, 93)
        incident = wait_for(lambda: Incident.objects.open().filter(source=watched.source).first(), 30,
                            "the orange incident")
        # No beat, no task here: the thread alone opened it, within a few of its runs (a busy machine's margin).
        assert incident.level == "orange"
        assert (incident.opened_at - filled).total_seconds() < 5
    finally:
        loop.stop()
    assert not loop._thread.is_alive()
