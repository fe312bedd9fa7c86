"""Alerting work has its own lane: a disk check runs while every notification send hangs.

The workers are the Procfile's own commands, as `scripts/run` starts them, on the test's database and
Redis; the hanging sends go to a real webhook receiver that holds every request.
"""

import contextlib
import os

import psutil
import pytest
import yaml
from django.conf import settings

from glmadmin.celery import app
from monitoring.models import DiskSample, WatchedFilesystem
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook
from tests.support.processes import ROOT, process_group, subprocess_env, wait_for

receiver = notify_support.receiver  # a real webhook receiver, as a fixture of this module

APPS = ("alerts.", "monitoring.", "inference.")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def consumed_queues(command: str) -> set[str]:
    """The queues a `celery worker -Q a,b` command line consumes (host names as the default host's)."""
    words = command.replace('"', "").split()
    if "worker" not in words:
        return set()
    queues = words[words.index("-Q") + 1] if "-Q" in words else "celery"
    return set(queues.replace("${GLMADMIN_HOST_NAME:-local}", "local").split(","))


def test_every_task_has_a_deadline():
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if name.startswith(APPS)}
    assert ours
    for name, task in ours.items():
        assert task.soft_time_limit and task.time_limit and task.soft_time_limit < task.time_limit, name


def test_each_lane_is_consumed_by_its_own_worker_in_the_procfile_and_compose():
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    needed = routed | {"celery", "engines.local", "alerts.local"}
    # A lane's worker consumes the lane alone; the alerts worker also takes its own host's disk checks.
    own = {lane: {lane} for lane in routed} | {settings.ALERTS_QUEUE: {settings.ALERTS_QUEUE, "alerts.local"}}
    procfile_workers = [consumed_queues(command) for command in procfile().values()]
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    compose_workers = [consumed_queues(" ".join(service.get("command", [])))
                       for service in compose["services"].values() if isinstance(service.get("command"), list)]
    for workers in (procfile_workers, compose_workers):
        assert set().union(*workers) >= needed
        for lane in routed:  # a lane shares its worker with no other lane
            assert [queues for queues in workers if lane in queues] == [own[lane]], lane


def test_alerting_tasks_never_share_a_lane_with_sends_cleanup_or_engines():
    routes = settings.CELERY_TASK_ROUTES
    alerting = {routes[name]["queue"] for name in ("monitoring.tasks.check_disks", "alerts.tasks.repeat_red_alerts",
                                                   "monitoring.tasks.watch_telemetry_flow")}
    assert alerting == {settings.ALERTS_QUEUE}
    assert routes["alerts.tasks.deliver_notification"]["queue"] != settings.ALERTS_QUEUE
    for name in ("monitoring.tasks.run_cleanup", "inference.tasks.reconcile_engine"):
        assert name not in routes  # the default lane (or the host's engine queue), never the alerts one


@pytest.fixture
def workers(transactional_db, tmp_path):
    """Start the Procfile's workers by name; their process groups are stopped afterwards."""
    # Sends give up after 60 s, so the receiver's 30 s hold keeps both notify slots busy throughout.
    env = {**subprocess_env(), "GLMADMIN_HOST_NAME": "local", "GLMADMIN_NOTIFY_TIMEOUT": "60"}
    with contextlib.ExitStack() as stack:
        logs = []

        def start(name, **more_env):
            logs.append(tmp_path / f"{name}.log")
            return stack.enter_context(process_group(["bash", "-c", procfile()[name]], logs[-1], {**env, **more_env}))

        yield start
    for log in logs:
        print(f"{log.name}:\n{log.read_text()[-3000:]}")  # shown by pytest for a failed test


def test_a_disk_check_runs_while_every_send_hangs(workers, receiver, no_default_filesystems, tmp_path):
    from monitoring.tasks import check_disks

    release = receiver.hold()  # every webhook request waits 30 s
    for number in range(3):
        webhook(receiver.url, name=f"hook-{number}")
    reading(98)  # a red incident: three notifications queued to the notify lane
    WatchedFilesystem.objects.create(path=str(tmp_path), label="scratch")
    workers("notify")
    workers("alerts")
    wait_for(lambda: len(receiver.requests) >= 2, 90, "both notify slots to hang on the receiver")
    check_disks.apply_async()  # routed to the alerts lane
    wait_for(DiskSample.objects.exists, 60, "the disk check to run beside the hanging sends")
    assert not release.is_set() and len(receiver.requests) == 2  # the sends were still hanging


def celery_processes(worker) -> int:
    """The Celery processes of a worker started by the `workers` fixture: its main process and pool children."""
    def group_of(pid: int) -> int | None:
        try:
            return os.getpgid(pid)
        except ProcessLookupError:
            return None
    return sum(1 for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and "celery" in " ".join(p.info["cmdline"]) and group_of(p.pid) == worker.pid)


def ready(tmp_path, name: str) -> None:
    wait_for(lambda: " ready." in (tmp_path / f"{name}.log").read_text(), 60, f"the {name} worker to consume")


def test_the_notify_lane_forks_a_send_process_only_to_send(workers, receiver, tmp_path):
    """A prefork child holds ~75 MB: the notify worker waits with none and forks one for a send (--autoscale 2,0;
    bench/notify_idle measures what that costs the first send)."""
    from alerts.notifications.planner import plan_channel_test
    from alerts.tasks import deliver_notification

    notify = workers("notify")
    ready(tmp_path, "notify")
    assert celery_processes(notify) == 1  # the worker alone: no send process waits
    deliver_notification.apply_async((plan_channel_test(webhook(receiver.url)).pk,))
    wait_for(lambda: len(receiver.requests) == 1, 60, "the channel test at the receiver")
    assert celery_processes(notify) == 2  # the send process forked for it, kept a while for the next send


def test_the_engine_lane_keeps_one_process_at_rest(workers, tmp_path):
    worker = workers("worker")
    ready(tmp_path, "worker")
    assert celery_processes(worker) == 2  # the worker and one child (--autoscale 2,1)


def test_a_pool_shrinks_back_while_its_tasks_keep_coming(workers, receiver, tmp_path):
    """Celery's autoscaler shrinks only after a whole keepalive without any task: on the engine lane (a reconcile
    every 5 s) a second process forked for one overlap stayed for good. glmadmin.autoscale shrinks once no task
    found every process taken for a keepalive; shown on the notify lane, whose sends are easy to hold."""
    from alerts.models import Notification
    from alerts.notifications.planner import plan_channel_test
    from alerts.tasks import deliver_notification

    notify = workers("notify", AUTOSCALE_KEEPALIVE="2")  # Celery's knob (seconds), read by the worker at start
    ready(tmp_path, "notify")
    channel = webhook(receiver.url)
    release = receiver.hold()
    for _ in range(2):
        deliver_notification.apply_async((plan_channel_test(channel).pk,))
    wait_for(lambda: len(receiver.requests) == 2, 60, "two sends held at once")
    assert celery_processes(notify) == 3  # grown to two send processes
    release.set()

    def one_send() -> bool:
        """A send, alone (the last one finished first); True once the pool is down to one process."""
        note = plan_channel_test(channel)
        deliver_notification.apply_async((note.pk,))
        wait_for(lambda: Notification.objects.get(pk=note.pk).status == Notification.Status.SENT, 30, "the send")
        return celery_processes(notify) == 2

    wait_for(one_send, 30, "the pool to shrink to one process while sends keep coming")
