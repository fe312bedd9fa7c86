"""The beat schedules of telemetry: sampling on each host (every TelemetrySettings interval, in the
host's own queue), downsampling every minute (anywhere).

Sampling reads the host's own NVML and /proc, so like the engines' reconcile loop
(inference/schedules.py) each host has its own periodic task routed to `engines.<host>`, which only
that host's worker consumes; the worker creates it when it starts.
"""

from django_celery_beat.models import PeriodicTask

from glmadmin.schedules import ensure_interval_task, every_seconds, host_queue

from ..models import TelemetrySettings

SAMPLE_TASK = "monitoring.tasks.sample_telemetry"
DOWNSAMPLE_TASK = "monitoring.tasks.downsample_telemetry"
DOWNSAMPLE_NAME = "Downsample and prune telemetry"


def schedule_name(host: str) -> str:
    return f"Sample telemetry on {host}"


def expires_for(every: int) -> int:
    # A sample that could not start before the next one is due is dropped, not run late.
    return max(1, every - 1)


def ensure_host_schedule(host: str) -> PeriodicTask:
    """The sampling schedule of `host`, created at the current interval if it is missing."""
    every = TelemetrySettings.load().sample_interval_seconds
    return ensure_interval_task(schedule_name(host), SAMPLE_TASK, every=every, queue=host_queue(host),
                                kwargs={"host": host}, expires=expires_for(every))


def apply_interval(every: int) -> None:
    """Point every host's sampling schedule at `every` seconds; django-celery-beat notices the change by itself."""
    interval = every_seconds(every)
    for task in PeriodicTask.objects.filter(task=SAMPLE_TASK):
        if task.interval_id != interval.pk or task.expire_seconds != expires_for(every):
            task.interval, task.expire_seconds = interval, expires_for(every)
            task.save()  # PeriodicTask.save() bumps the change marker beat polls


def on_settings_saved(sender, instance, **kwargs):
    apply_interval(instance.sample_interval_seconds)
