"""Beat rows that run a task every few seconds on one host: the shape shared by each host's engine reconcile loop
(inference/schedules.py) and its telemetry sampling (monitoring/telemetry/schedule.py).

They are plain django-celery-beat periodic tasks, editable in the admin. Work that reads a host's own GPUs,
processes or engines goes to that host's queue, which only its own worker consumes.
"""

import json

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django_celery_beat.models import IntervalSchedule, PeriodicTask


def host_queue(host: str) -> str:
    """The Celery queue only `host`'s worker consumes."""
    return f"engines.{host}"


def host_alerts_queue(host: str) -> str:
    """The queue of `host`'s own alerting work (its disk checks), consumed by its alerts worker beside the shared
    alerts lane: a check of the host's mounts never waits behind its engine control."""
    return f"alerts.{host}"


def every_seconds(every: int) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    return interval


def ensure_interval_task(name: str, task: str, every: int, queue: str, kwargs: dict, expires: int) -> PeriodicTask:
    """The periodic task `name`, created if it is missing. An existing row is left as it is: an operator may have
    edited it in the admin, and its owner moves it on purpose (e.g. a new sampling interval)."""
    try:
        row, _ = PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": every_seconds(every), "queue": queue, "args": json.dumps([]),
                      "kwargs": json.dumps(kwargs), "expire_seconds": expires},
        )
    except (IntegrityError, ValidationError):
        # Another worker of the host (they start together) created it a moment ago: PeriodicTask.save()
        # validates the name's uniqueness itself, so the race ends in a ValidationError, not get_or_create's retry.
        row = PeriodicTask.objects.filter(name=name).first()
        if row is None:
            raise  # not that race: a real problem with the row, said as it is
    return row
