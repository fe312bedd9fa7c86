"""The dead man's switch with several hosts: each checks its own disks, so one host's checks stopping is a
stall even while another's go on; a host retired by deleting its schedule is no longer waited for.

The marks are written as check runs write them (the real task, run as each host), then dated back on Redis's
clock."""

import pytest
from django_celery_beat.models import PeriodicTask

from glmadmin.lib import redis as rd
from monitoring import deadman, disk_schedule
from monitoring.tasks import check_disks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def two_hosts_check_every_10_seconds(settings):
    settings.MONITORING_STALLED_AFTER_CHECKS, settings.MONITORING_STALLED_MIN_SECONDS = 3, 30
    PeriodicTask.objects.filter(task=deadman.CHECK_TASK).delete()
    for host in ("local", "gpu2"):
        disk_schedule.ensure_host_schedule(host)
    deadman.forget_interval()
    yield
    deadman.forget_interval()


def checked_on(settings, host: str) -> None:
    settings.GLMADMIN_HOST_NAME = host
    assert check_disks.apply(kwargs={"host": host}).get().endswith(f"on {host}")


def age(host: str, seconds: float) -> None:
    """Date `host`'s last completed check `seconds` back."""
    now, micros = rd.client().time()
    rd.client().hset(deadman.hosts_key(), host, now + micros / 1e6 - seconds)


def test_one_host_stopping_is_a_stall_while_another_checks(settings, no_default_filesystems, client,
                                                           django_user_model):
    checked_on(settings, "gpu2")
    checked_on(settings, "local")  # the latest check of all: local's
    assert not deadman.watch().stalled
    age("gpu2", 45)  # gpu2's alerts worker stopped 45 s ago; local goes on
    seen = deadman.watch()
    assert seen.stalled and seen.host == "gpu2" and seen.now - seen.last_check > 40
    transition = deadman.judge(seen)
    assert transition.incident.host == "gpu2" and "(on host gpu2)" in transition.incident.message
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    assert "the last ran on host gpu2" in client.get("/").text

    PeriodicTask.objects.filter(name=disk_schedule.schedule_name("gpu2")).delete()  # gpu2 retired
    deadman.forget_interval()
    assert not deadman.watch().stalled
    assert deadman.judge(deadman.watch()).incident.resolved_at is not None


def test_a_host_that_never_checked_is_not_waited_for(settings, no_default_filesystems):
    checked_on(settings, "local")  # gpu2 has a schedule but no check yet: the switch arms with the first
    seen = deadman.watch()
    assert seen.armed and not seen.stalled and seen.host == "local"
