"""Each host's alerts worker checks that host's disks, and their incidents carry that host.

A second host is the same code with another GLMADMIN_HOST_NAME: here in this process (the `settings`
fixture), and as two real alerts workers started with the Procfile's command, one per host.
"""

import contextlib
import importlib
import json

import pytest
from django.conf import settings as django_settings
from django_celery_beat.models import PeriodicTask

from alerts.models import Incident
from glmadmin.celery import app
from glmadmin.lib import redis as rd
from glmadmin.schedules import every_seconds
from monitoring import disk_schedule, tasks
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from tests.support.processes import ROOT, process_group, subprocess_env, wait_for


def watch(path, host: str, **levels) -> WatchedFilesystem:
    return WatchedFilesystem.objects.create(path=str(path), label=path.name, host=host, **levels)


def red_at_once(path, host: str) -> WatchedFilesystem:
    """A filesystem whose every reading is red (any usage is at or above 0 %)."""
    return watch(path, host, yellow_enabled=False, orange_enabled=False, red_percent=0.0, red_for_seconds=0)


def test_a_new_filesystem_belongs_to_this_host(no_default_filesystems, tmp_path, settings):
    settings.GLMADMIN_HOST_NAME = "gpu3"
    assert WatchedFilesystem.objects.create(path=str(tmp_path), label="scratch").host == "gpu3"


def test_each_host_checks_only_its_own_filesystems_and_its_incidents_carry_it(no_default_filesystems, tmp_path,
                                                                               settings):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, theirs = red_at_once(tmp_path / "a", "local"), red_at_once(tmp_path / "b", "gpu2")
    settings.GLMADMIN_HOST_NAME = "local"
    assert [r.filesystem for r in check_all()] == [ours]
    theirs.refresh_from_db()
    assert theirs.last_checked_at is None
    settings.GLMADMIN_HOST_NAME = "gpu2"
    assert [r.filesystem for r in check_all()] == [theirs]
    hosts = dict(Incident.objects.open().values_list("source", "host"))
    assert hosts == {ours.source: "local", theirs.source: "gpu2"}


def test_a_hosts_check_of_another_hosts_disks_is_refused(no_default_filesystems, tmp_path, settings):
    settings.GLMADMIN_HOST_NAME = "local"
    red_at_once(tmp_path, "gpu2")
    assert tasks.check_disks(host="gpu2") == "skipped: this worker is on host local, not gpu2"
    assert not Incident.objects.exists()


def test_another_hosts_path_is_not_looked_for_here(db, settings):
    settings.GLMADMIN_HOST_NAME = "local"
    remote = WatchedFilesystem(path="/no/such/dir/here", label="models", host="gpu2")
    remote.full_clean()  # only gpu2's worker can see its mounts
    local = WatchedFilesystem(path="/no/such/dir/here", label="models", host="local")
    assert local.path_problem().startswith("/no/such/dir/here cannot be read")


def test_the_one_schedule_of_before_becomes_this_hosts_in_its_own_alerts_queue(db, settings):
    from django.apps import apps

    migration = importlib.import_module("monitoring.migrations.0016_watched_filesystem_host")
    settings.GLMADMIN_HOST_NAME = "local"
    PeriodicTask.objects.filter(task="monitoring.tasks.check_disks").delete()
    old = PeriodicTask.objects.create(name="Check disk usage", task="monitoring.tasks.check_disks",
                                      interval=every_seconds(5), expire_seconds=4, kwargs="{}", enabled=False)
    migration.per_host_schedule(apps, None)
    row = PeriodicTask.objects.get(pk=old.pk)  # the operator's interval, expiry and switch are kept
    assert (row.name, row.queue, json.loads(row.kwargs)) == ("Check disk usage on local", "alerts.local",
                                                             {"host": "local"})
    assert (row.interval.every, row.expire_seconds, row.enabled) == (5, 4, False)
    migration.one_schedule(apps, None)
    row.refresh_from_db()
    assert (row.name, row.queue, json.loads(row.kwargs)) == ("Check disk usage", None, {})


def test_a_hosts_schedule_runs_every_10_s_in_its_alerts_queue(db):
    row = disk_schedule.ensure_host_schedule("gpu2")
    assert (row.name, row.task, row.queue, json.loads(row.kwargs)) == (
        "Check disk usage on gpu2", "monitoring.tasks.check_disks", "alerts.gpu2", {"host": "gpu2"})
    assert (row.interval.every, row.expire_seconds) == (10, 9)


# --- two hosts' real workers ------------------------------------------------------------------------------------

def alerts_worker_command() -> str:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ":" in line and not line.startswith("#"))["alerts"]


@pytest.fixture
def alerts_worker(transactional_db, tmp_path):
    """Start the Procfile's alerts worker as host `name`; stopped (its whole group) afterwards."""
    with contextlib.ExitStack() as stack:
        logs = []

        def start(host: str):
            logs.append(tmp_path / f"alerts-{host}.log")
            env = {**subprocess_env(), "GLMADMIN_HOST_NAME": host}
            return stack.enter_context(process_group(["bash", "-c", alerts_worker_command()], logs[-1], env))

        yield start
    for log in logs:
        print(f"{log.name}:\n{log.read_text()[-3000:]}")  # shown by pytest for a failed test


def send_as_beat(name: str) -> None:
    row = PeriodicTask.objects.get(name=name)
    app.send_task(row.task, kwargs=json.loads(row.kwargs), queue=row.queue)


def waiting_in(queue: str) -> int:
    return rd.client().llen(f"{django_settings.REDIS_PREFIX}:celery:{queue}")


def test_two_hosts_workers_each_check_their_own_disks(alerts_worker, no_default_filesystems, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, theirs = red_at_once(tmp_path / "a", "local"), red_at_once(tmp_path / "b", "gpu2")
    disk_schedule.ensure_host_schedule("local")  # the migration's (a transactional test before may have flushed it)
    alerts_worker("local")
    # gpu2's check waits in gpu2's own queue: local's worker, which takes the shared alerts lane, never runs it.
    PeriodicTask.objects.filter(name="Check disk usage on gpu2").delete()
    app.send_task("monitoring.tasks.check_disks", kwargs={"host": "gpu2"}, queue="alerts.gpu2")
    send_as_beat("Check disk usage on local")
    wait_for(lambda: Incident.objects.filter(source=ours.source).exists(), 180, "local's worker to check its disk")
    assert Incident.objects.get(source=ours.source).host == "local"
    assert not Incident.objects.filter(source=theirs.source).exists() and waiting_in("alerts.gpu2") == 1
    theirs.refresh_from_db()
    assert theirs.last_checked_at is None

    alerts_worker("gpu2")  # a second host's alerts worker: it takes its waiting check and brings its schedule
    wait_for(lambda: Incident.objects.filter(source=theirs.source).exists(), 180, "gpu2's worker to check its disk")
    assert Incident.objects.get(source=theirs.source).host == "gpu2"
    schedule = wait_for(lambda: PeriodicTask.objects.filter(name="Check disk usage on gpu2").first(), 60,
                        "gpu2's worker to create its schedule")
    assert (schedule.queue, json.loads(schedule.kwargs)) == ("alerts.gpu2", {"host": "gpu2"})
    assert waiting_in("alerts.gpu2") == 0
    theirs.refresh_from_db()
    checked = theirs.last_checked_at
    send_as_beat("Check disk usage on gpu2")
    wait_for(lambda: WatchedFilesystem.objects.get(pk=theirs.pk).last_checked_at > checked, 120,
             "gpu2's scheduled check to run on gpu2's worker")
