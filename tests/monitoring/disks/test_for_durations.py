"""Disk levels have a "for" duration: a reading must hold a level that long before its incident opens or escalates.

Real usage on a real tmpfs; time is the check's `now`, not slept.
"""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import Incident, Notification
from glmadmin import live
from monitoring import disk_pending
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from tests.support import notify as notify_support
from tests.support import tmpfs as tmpfs_support
from tests.support.notify import webhook, work
from tests.support.tmpfs import empty, fill_to

pytestmark = [pytest.mark.privileged, pytest.mark.django_db]

volume, receiver = tmpfs_support.volume, notify_support.receiver  # real tmpfs and webhook receiver, as fixtures

T0 = timezone.now()


@pytest.fixture(autouse=True)
def _t0():
    global T0
    T0 = timezone.now().replace(microsecond=0)  # each test's own start: the dashboard reads pending in real time


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def check(django_capture_on_commit_callbacks):
    def check(seconds: float):
        with django_capture_on_commit_callbacks(execute=True):  # notifications are planned as a transition commits
            (reading,) = check_all(now=at(seconds))
        return reading
    return check


@pytest.fixture
def watched(no_default_filesystems, volume, receiver):
    webhook(receiver.url)  # every level
    return WatchedFilesystem.objects.create(path=str(volume), label="vol")  # defaults: yellow 60 s, orange 30 s, red 0


def test_a_spike_shorter_than_the_duration_opens_nothing_and_notifies_nobody(watched, check, volume, receiver):
    fill_to(volume, 93)  # orange
    assert check(0).level is None
    assert check(20).level is None
    empty(volume)  # the download finished and moved on
    assert check(25).level is None

    assert not Incident.objects.exists()
    assert not Notification.objects.exists()
    work()
    assert receiver.requests == []
    assert disk_pending.current([watched], at(25).timestamp()) == {}


def test_a_reading_held_past_the_duration_opens_and_notifies(watched, check, volume, receiver):
    fill_to(volume, 93)
    check(0)
    reading = check(20)
    assert reading.level is None and reading.transition is None
    pending = disk_pending.current([watched], at(20).timestamp())[watched.pk]
    assert (pending.level, pending.for_seconds, pending.held(at(32).timestamp())) == ("orange", 30, 32)

    reading = check(31)
    assert (reading.level, reading.transition.kind) == ("orange", "opened")  # straight to orange, yellow not due
    incident = Incident.objects.get()
    assert incident.message.endswith(f"on {volume} for 31 s")
    assert disk_pending.current([watched], at(31).timestamp()) == {}
    work()
    (request,) = receiver.requests
    assert "ORANGE" in request.raw.decode().upper()


def test_red_is_immediate_by_default(watched, check, volume):
    fill_to(volume, 98)
    reading = check(0)
    assert (reading.level, reading.transition.kind) == ("red", "opened")


def test_a_dip_below_the_threshold_starts_the_clock_again(watched, check, volume):
    fill_to(volume, 93)
    check(0)
    empty(volume)
    check(20)
    fill_to(volume, 93)
    assert check(25).level is None
    assert check(50).level is None  # 25 s held since the dip, not 50
    assert check(56).level == "orange"


def test_a_gap_in_the_readings_starts_the_clock_again(watched, check, volume):
    fill_to(volume, 93)
    check(0)
    assert check(disk_pending.MAX_GAP_SECONDS + 40).level is None  # nobody saw what the disk did meanwhile
    assert check(disk_pending.MAX_GAP_SECONDS + 71).level == "orange"


def test_an_escalation_waits_its_duration_too(watched, check, volume):
    watched.yellow_for_seconds = 0
    watched.save()
    fill_to(volume, 86)
    assert check(0).transition.kind == "opened"
    fill_to(volume, 93)
    assert check(10).level == "yellow"  # orange pending, the incident stays yellow
    pending = disk_pending.current([watched], at(10).timestamp())[watched.pk]
    assert pending.level == "orange"
    reading = check(40)
    assert (reading.level, reading.transition.kind) == ("orange", "escalated")

    empty(volume)  # resolving is never held back: the clear margin already stops flapping
    assert check(41).transition.kind == "resolved"


def test_zero_durations_keep_every_level_immediate(watched, check, volume):
    watched.yellow_for_seconds = watched.orange_for_seconds = 0
    watched.save()
    fill_to(volume, 93)
    assert check(0).level == "orange"


def test_pending_is_shown_on_the_dashboard_row_and_in_the_live_state(watched, check, volume, admin_client):
    fill_to(volume, 93)
    check(0)
    page = admin_client.get("/").content.decode()
    row = page[page.index(f'<tr data-fs="{watched.pk}"'):]
    row = row[:row.index("</tr>")]
    assert re.search(r"orange pending for \d+ s of 30 s", row), row
    assert 'data-level="orange"' in row and 'data-for="30"' in row
    (state,) = live.state()["filesystems"]
    assert state["pending"] == {"level": "orange", "since": at(0).timestamp(), "for": 30}

    check(31)  # due: the incident opens and nothing is pending any more
    assert live.state()["filesystems"][0]["pending"] is None
    page = admin_client.get("/").content.decode()
    assert "pending for" not in page


def test_check_disk_says_what_is_pending(watched, volume, capsys):
    fill_to(volume, 93)
    call_command("check_disk")
    line = capsys.readouterr().out.strip()
    assert line.endswith("ok  (orange pending, needs 30 s)"), line
    assert not Incident.objects.exists()
