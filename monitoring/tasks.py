"""Beat tasks. Each is safe to skip, repeat or overlap: the schedules set an
expiry below the interval (a backlog after a worker outage is dropped, not
replayed), and a lock makes a second copy return at once."""

from celery import shared_task

from glmadmin.lib.redis import single_flight

from . import disk_check


@shared_task
def check_disks() -> str:
    with single_flight("check-disks", ttl_seconds=60) as acquired:
        if not acquired:
            return "skipped: another check is running"
        readings = disk_check.check_all()
    return f"checked {len(readings)} filesystem(s)"


@shared_task
def prune_history() -> str:
    return f"deleted {disk_check.prune_samples()} disk sample(s)"
