"""The beat schedule of disk checks: one per host, in the host's own alerts queue (alerts.<host>).

statvfs reads the mounts of the machine it runs on, so like telemetry sampling each host checks its own
filesystems (WatchedFilesystem.host) and nobody else's. The queue is the alerts lane's, per host, not
engines.<host>: a disk check must not wait behind an engine restart on the same host. The host's alerts
worker creates the schedule when it starts (tasks._check_this_hosts_disks); the default host's comes from
the migrations.
"""

from django.conf import settings
from django_celery_beat.models import PeriodicTask

from glmadmin.schedules import ensure_interval_task, host_alerts_queue

CHECK_TASK = "monitoring.tasks.check_disks"


def schedule_name(host: str) -> str:
    return f"Check disk usage on {host}"


def ensure_host_schedule(host: str) -> PeriodicTask:
    """`host`'s disk check schedule, created (every DISK_CHECK_SECONDS) if it is missing."""
    every = settings.DISK_CHECK_SECONDS
    return ensure_interval_task(schedule_name(host), CHECK_TASK, every=every, queue=host_alerts_queue(host),
                                kwargs={"host": host}, expires=expires(every))


def expires(every: int) -> int:
    """A check not started by the time the next is sent is dropped (a backlog after an outage is not replayed).
    Whole seconds: at 1 s the expiry is the interval itself; a check that overlaps the next one makes the later
    one skip (the task's lock)."""
    return max(every - 1, 1)
