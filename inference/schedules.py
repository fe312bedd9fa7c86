"""Beat schedules that belong to engines: each host's reconcile loop, and daily quiet-hour restarts.

They are ordinary django-celery-beat periodic tasks, editable in the admin.
"""

import json
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from glmadmin.schedules import ensure_interval_task, host_queue

from .models import Engine

RECONCILE_EVERY = 5  # seconds; each step is short, so this is also the pace of starts and stops
# A daily restart not started within this long of its time is dropped (the beat row's expiry).
DAILY_RESTART_EXPIRES = 1800


def ensure_host_schedule(host: str) -> PeriodicTask:
    """The reconcile loop of `host`, in the queue only that host's worker consumes."""
    return ensure_interval_task(f"Reconcile engines on {host}", "inference.tasks.reconcile_engines",
                                every=RECONCILE_EVERY, queue=host_queue(host), kwargs={"host": host},
                                expires=RECONCILE_EVERY - 1)


def daily_restart_name(engine) -> str:
    return f"Daily restart of engine {engine.name}"


def sync_daily_restart(engine) -> None:
    """Create, move or remove the engine's daily restart to match its daily_restart_at."""
    PeriodicTask.objects.filter(task="inference.tasks.scheduled_restart", args=json.dumps([engine.pk])).exclude(
        name=daily_restart_name(engine)).delete()
    if engine.daily_restart_at is None:
        PeriodicTask.objects.filter(name=daily_restart_name(engine)).delete()
        return
    at = engine.daily_restart_at
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=str(at.minute), hour=str(at.hour), day_of_week="*", day_of_month="*", month_of_year="*",
        timezone=settings.TIME_ZONE)
    PeriodicTask.objects.update_or_create(
        name=daily_restart_name(engine),
        defaults={"task": "inference.tasks.scheduled_restart", "crontab": crontab, "interval": None,
                  "args": json.dumps([engine.pk]), "queue": host_queue(engine.host),
                  "expire_seconds": DAILY_RESTART_EXPIRES},
    )


def claim_daily_restart(engine_id: int, now: datetime | None = None) -> bool:
    """Claim today's scheduled restart of the engine; True for exactly one caller a day.

    Beat sends the task once a day, but a message can arrive twice (redelivered after a worker died, a late
    copy, two beats running): a conditional UPDATE lets only the first restart the engine. Taken when the
    last claim is from an earlier day (server time zone, as the schedule) and older than the task's expiry,
    so a restart at 23:50 and a late copy at 00:10 are still one restart. A claim whose restart then failed
    is not retried that day: the supervisor brings a crashed engine back, not the schedule.
    """
    now = now or timezone.now()
    start_of_day = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    before = min(start_of_day, now - timedelta(seconds=DAILY_RESTART_EXPIRES))
    claimed = Engine.objects.filter(pk=engine_id, enabled=True).filter(
        Q(last_scheduled_restart_at__isnull=True) | Q(last_scheduled_restart_at__lt=before)
    ).update(last_scheduled_restart_at=now)
    return claimed == 1


def on_engine_saved(sender, instance, **kwargs):
    sync_daily_restart(instance)


def on_engine_deleted(sender, instance, **kwargs):
    PeriodicTask.objects.filter(name=daily_restart_name(instance)).delete()
