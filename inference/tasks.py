from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from . import control, schedules, supervisor
from .models import Engine


@shared_task(soft_time_limit=60, time_limit=90)
def reconcile_engines(host: str | None = None) -> str:
    supervisor.reconcile_host(host)
    return "reconciled"


@shared_task(soft_time_limit=60, time_limit=90)
def reconcile_engine(engine_id: int) -> str:
    return "stepped" if supervisor.reconcile(engine_id) else "skipped: busy"


@shared_task(soft_time_limit=60, time_limit=90)
def scheduled_restart(engine_id: int) -> str:
    engine = Engine.objects.filter(pk=engine_id, enabled=True).first()
    if engine is None:
        return "skipped: engine gone or disabled"
    control.request_restart(engine)
    supervisor.reconcile(engine.pk)
    return f"restart of {engine.name} requested"


@worker_ready.connect
def _schedule_this_host(**kwargs):
    # A worker that starts on a new host brings that host's reconcile schedule with it.
    schedules.ensure_host_schedule(settings.GLMADMIN_HOST_NAME)
