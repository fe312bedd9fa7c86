"""Default cleanup and log policies, and the cleanup schedules (editable afterwards in the admin)."""

import json
import os

from django.conf import settings
from django.db import migrations

# name, task, every (seconds), expires (seconds): each expires before its next run.
# Both are safe to overlap: a cleanup holds a lock per root; a size measurement only writes numbers.
SCHEDULES = [
    ("Clean caches and rotate logs", "monitoring.tasks.run_cleanup", 7200, 7000),
    ("Measure cache size", "monitoring.tasks.measure_cache", 300, 290),
]


def vllm_cache_root() -> str:
    # Where vLLM keeps compiled graphs and kernels; VLLM_CACHE_ROOT moves it.
    return os.environ.get("VLLM_CACHE_ROOT") or os.path.join(os.path.expanduser("~"), ".cache", "vllm")


def create_defaults(apps, schema_editor):
    CleanupPolicy = apps.get_model("monitoring", "CleanupPolicy")
    LogPolicy = apps.get_model("monitoring", "LogPolicy")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    CleanupPolicy.objects.get_or_create(name="vllm-cache", defaults={"root": vllm_cache_root()})
    LogPolicy.objects.get_or_create(
        name="engine-logs", defaults={"patterns": str(settings.DATA_DIR / "engines" / "*" / "engine.log")})
    for name, task, every, expires in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.get_or_create(
            name=name,
            defaults={"task": task, "interval": interval, "expire_seconds": expires, "args": json.dumps([]),
                      "kwargs": json.dumps({})},
        )


def remove_defaults(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, *_ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_cleanup"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
