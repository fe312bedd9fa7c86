"""The defaults a fresh install needs: the root filesystem is watched, and the
beat schedules exist (editable afterwards under Periodic tasks in the admin)."""

import json

from django.db import migrations

# name, task, every (seconds), expires (seconds): each task expires before its
# next run, so a worker that was down does not face a stampede of stale checks.
SCHEDULES = [
    ("Check disk usage", "monitoring.tasks.check_disks", 10, 9),
    ("Prune disk history", "monitoring.tasks.prune_history", 3600, 3000),
]


def create_defaults(apps, schema_editor):
    WatchedFilesystem = apps.get_model("monitoring", "WatchedFilesystem")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    WatchedFilesystem.objects.get_or_create(path="/", defaults={"label": "root"})
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
        ("monitoring", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_defaults, remove_schedules)]
