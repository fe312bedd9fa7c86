"""The notification schedules (editable afterwards under Periodic tasks in the admin)."""

import json

from django.db import migrations

# name, task, every (seconds), expires (seconds): each expires before its next run.
# Both are safe to overlap: reminders have fixed keys, deliveries are claimed.
SCHEDULES = [
    ("Repeat unacknowledged red alerts", "monitoring.tasks.repeat_red_alerts", 60, 50),
    ("Retry stalled notifications", "monitoring.tasks.redeliver_stalled_notifications", 60, 50),
]


def create_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every, expires in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "expire_seconds": expires, "args": json.dumps([]),
                      "kwargs": json.dumps({})},
        )


def remove_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_notifications"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedules, remove_schedules)]
