"""The dead man's switch in one process: the heartbeat's age turns into the banner of every page (its first
render included), and into one incident whose notification the web process delivers itself (no worker runs
here: the delivery task the planner also queues is never picked up).

The heartbeat is written as a check run writes it, dated back on Redis's clock; the ticks are called directly.
"""

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from alerts.models import Incident, Notification
from glmadmin.lib import redis as rd
from monitoring import deadman
from monitoring.tasks import check_disks
from tests.support.notify import receiver, webhook  # noqa: F401 - a real webhook receiver, as a fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def checks_every_10_seconds(settings):
    settings.MONITORING_STALLED_AFTER_CHECKS, settings.MONITORING_STALLED_MIN_SECONDS = 3, 30
    schedule(10)
    yield
    deadman.forget_interval()


def schedule(seconds: int, enabled: bool = True):
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    # The migration's row (a transactional test starts from an emptied database).
    PeriodicTask.objects.update_or_create(name="Check disk usage", defaults={
        "task": deadman.CHECK_TASK, "interval": interval, "enabled": enabled, "expire_seconds": 9})
    deadman.forget_interval()


def heartbeat(age: float, host: str = "gpu-a"):
    """A check run that completed `age` seconds ago (Redis's clock), on `host`."""
    seconds, micros = rd.client().time()
    rd.client().hset(deadman.heartbeat_key(), mapping={"at": seconds + micros / 1e6 - age, "host": host})
    rd.client().hdel(deadman.heartbeat_key(), "every")


@pytest.fixture
def viewer(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    return client


def test_a_completed_check_run_records_the_heartbeat(no_default_filesystems):
    assert not deadman.watch().armed
    check_disks.apply().get()
    seen = deadman.watch()
    assert seen.armed and not seen.stalled and seen.now - seen.last_check < 60


def test_the_first_render_of_a_page_shows_a_stall_and_not_a_fresh_heartbeat(viewer):
    heartbeat(5)  # within 3 checks of 10 s
    assert "Monitoring stalled" not in viewer.get("/").text
    heartbeat(45)
    page = viewer.get("/").text
    assert "data-monitoring-stalled" in page and "Monitoring stalled</strong> since" in page
    assert "completed for over 30 s" in page and "on host gpu-a" in page


def test_with_the_quick_checks_running_the_banner_says_alerts_are_still_raised(viewer, settings):
    """Beat down, the alerts worker up: its quick checks still raise disk alerts (monitoring/disk_watch.py), so
    the banner must not say that none can be raised; it says what waits instead."""
    heartbeat(45)
    page = viewer.get("/").text
    assert "Disk alerts cannot be raised" in page and "quick checks still" not in page
    settings.GLMADMIN_HOST_NAME = "other"
    deadman.record_quick_checks(0.5)  # another host's quick checks say nothing of gpu-a's
    assert "Disk alerts cannot be raised" in viewer.get("/").text
    settings.GLMADMIN_HOST_NAME = "gpu-a"
    deadman.record_quick_checks(0.5)  # as gpu-a's alerts worker's quick-check thread does every 2 s
    page = viewer.get("/").text
    assert "data-monitoring-stalled" in page and "Disk alerts cannot be raised" not in page
    assert "quick checks still run there and raise disk alerts" in page
    assert "quick disk checks still raise alerts; cleanup and engine supervision wait." in page  # the overview
    transition = deadman.judge(deadman.watch())
    assert "the alerts worker's quick checks still raise disk alerts" in transition.incident.message


def test_the_stall_is_counted_in_the_schedule_s_intervals(viewer):
    heartbeat(45)
    schedule(20)  # 3 checks of 20 s: 45 s is not a stall yet
    assert "data-monitoring-stalled" not in viewer.get("/").text
    schedule(10, enabled=False)  # checks switched off on purpose: nothing is due, nothing stalls
    assert "data-monitoring-stalled" not in viewer.get("/").text


def test_fast_checks_stall_no_sooner_than_the_floor(viewer, settings):
    schedule(2)
    heartbeat(20)  # 10 checks of 2 s missed, but within the 30 s floor
    assert "data-monitoring-stalled" not in viewer.get("/").text
    settings.MONITORING_STALLED_MIN_SECONDS = 5
    assert "completed for over 6 s" in viewer.get("/").text


def test_checks_not_sent_by_beat_say_their_own_interval(viewer):
    deadman.record_check(every=60)  # e.g. a loop in the worker: due every 60 s whatever the schedule
    client, key = rd.client(), deadman.heartbeat_key()
    client.hset(key, "at", float(client.hget(key, "at")) - 100)
    assert "data-monitoring-stalled" not in viewer.get("/").text  # 100 s < 3 x 60 s
    client.hset(key, "at", float(client.hget(key, "at")) - 100)
    assert "completed for over 180 s" in viewer.get("/").text


def test_no_heartbeat_yet_is_no_stall(viewer):
    assert "data-monitoring-stalled" not in viewer.get("/").text
    ticker = deadman.Ticker()
    ticker.tick()
    assert not Incident.objects.exists()


# 30 s: a channel that groups what happens on a host (the admin's default) still gets the stall at once and alone,
# since the worker that would send the group when it falls due may be what stalled.
@pytest.mark.parametrize("group_wait", [0, 30])
def test_a_stall_notifies_once_from_the_web_processes_and_its_end_is_told_too(viewer, receiver,  # noqa: F811
                                                                              group_wait):
    webhook(receiver.url, levels=["orange", "red"], group_wait_seconds=group_wait)
    first, second = deadman.Ticker(), deadman.Ticker()  # two web processes
    heartbeat(5)
    first.tick()
    second.tick()
    assert not Incident.objects.exists() and receiver.requests == []

    heartbeat(45)
    first.tick()
    second.tick()
    incident = Incident.objects.get()
    assert incident.kind == Incident.Kind.MONITORING and incident.level == "orange" and incident.is_open
    assert incident.host == "gpu-a" and "no disk check has completed since" in incident.message
    assert not incident.pauses_admission  # the engines are fine: inference goes on
    # Sent by the web process that opened it, at once: no worker runs in this test.
    assert [r.body["reason"] for r in receiver.requests] == ["opened"]
    assert receiver.requests[0].body["incident"]["kind"] == "monitoring"
    # The page draws the stall banner in place of the incident's own.
    page = viewer.get("/").text
    assert f'data-monitoring-stalled data-incident="{incident.pk}"' in page
    assert f'role="alert" data-incident="{incident.pk}"' not in page

    first.tick()  # still stalled: nothing new to tell
    second.tick()
    assert len(receiver.requests) == 1

    heartbeat(1)  # checks complete again
    second.tick()
    first.tick()
    incident.refresh_from_db()
    assert not incident.is_open
    assert [r.body["reason"] for r in receiver.requests] == ["opened", "resolved"]
    assert "data-monitoring-stalled" not in viewer.get("/").text
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


def test_a_failed_send_is_retried_by_the_web_process(receiver):  # noqa: F811
    webhook(receiver.url, levels=["orange"])
    receiver.reply(500, times=1)
    ticker = deadman.Ticker()
    heartbeat(45)
    ticker.tick()
    notification = Notification.objects.get()
    assert notification.status == "pending" and len(receiver.requests) == 1
    Notification.objects.filter(pk=notification.pk).update(next_attempt_at=timezone.now())  # its back-off is over
    ticker._retries[notification.pk] = 0  # and so is the ticker's wait
    ticker.tick()
    notification.refresh_from_db()
    assert notification.status == "sent" and len(receiver.requests) == 2


def test_the_banner_reaches_open_pages_through_the_live_state():
    heartbeat(45)
    state = deadman.part()["monitoring"]
    assert state["stalled_since"] and state["checks_every"] == 10 and state["stalled_after"] == 30
    heartbeat(1)
    assert deadman.part() == {"monitoring": {"stalled_since": None}}
