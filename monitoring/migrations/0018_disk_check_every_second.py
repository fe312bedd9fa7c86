"""The disk check schedules still at the old default (every 10 s) run every DISK_CHECK_SECONDS (1 s by
default); a schedule an operator set to something else is left as it is."""

from django.conf import settings
from django.db import migrations

TASK = "monitoring.tasks.check_disks"
OLD_EVERY, OLD_EXPIRES = 10, 9


def _move(apps, every_from, expires_from, every_to, expires_to):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    interval, _ = IntervalSchedule.objects.get_or_create(every=every_to, period="seconds")
    for row in PeriodicTask.objects.filter(task=TASK, interval__every=every_from, interval__period="seconds"):
        row.interval = interval
        if row.expire_seconds == expires_from:
            row.expire_seconds = expires_to
        row.save()


def every_second(apps, schema_editor):
    every = settings.DISK_CHECK_SECONDS
    if every != OLD_EVERY:
        _move(apps, OLD_EVERY, OLD_EXPIRES, every, max(every - 1, 1))


def every_ten_seconds(apps, schema_editor):
    every = settings.DISK_CHECK_SECONDS
    if every != OLD_EVERY:
        _move(apps, every, max(every - 1, 1), OLD_EVERY, OLD_EXPIRES)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0017_telemetry_rules_remedy"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(every_second, every_ten_seconds)]
