"""The beat schedule of disk checks: one per host, in the host's own alerts queue (alerts.<host>).

statvfs reads the mounts of the machine it runs on, so like telemetry sampling each host checks its own
filesystems (WatchedFilesystem.host) and nobody else's. The queue is the alerts lane's, per host, not
engines.<host>: a disk check must not wait behind an engine restart on the same host. The host's alerts
worker creates the schedule when it starts (tasks._check_this_hosts_disks); the default host's comes from
the migrations.
"""

from django_celery_beat.models import PeriodicTask

from glmadmin.schedules import ensure_interval_task, host_alerts_queue

CHECK_TASK = "monitoring.tasks.check_disks"
EVERY_SECONDS = 10


def schedule_name(host: str) -> str:
    return f"Check disk usage on {host}"


def ensure_host_schedule(host: str) -> PeriodicTask:
    """`host`'s disk check schedule, created (every 10 s, expiring before the next is due) if it is missing."""
    return ensure_interval_task(schedule_name(host), CHECK_TASK, every=EVERY_SECONDS, queue=host_alerts_queue(host),
                                kwargs={"host": host}, expires=EVERY_SECONDS - 1)
