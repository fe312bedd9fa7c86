from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from . import control, schedules, soft_restart, supervisor
from .models import Engine


@shared_task(soft_time_limit=60, time_limit=90)
def reconcile_engines(host: str | None = None) -> str:
    supervisor.reconcile_host(host)
    return "reconciled"


@shared_task(soft_time_limit=60, time_limit=90)
def reconcile_engine(engine_id: int) -> str:
    return "stepped" if supervisor.reconcile(engine_id) else "skipped: busy"


# Long enough for a soft restart: the drain (the engine's shutdown timeout) and three steps with deadlines.
SOFT_LIMIT = 600


@shared_task(soft_time_limit=SOFT_LIMIT, time_limit=SOFT_LIMIT + 30)
def scheduled_restart(engine_id: int) -> str:
    engine = Engine.objects.filter(pk=engine_id, enabled=True).first()
    if engine is None:
        return "skipped: engine gone or disabled"
    if not schedules.claim_daily_restart(engine_id):  # a duplicate: another delivery restarted it today
        return f"skipped: {engine.name} had its scheduled restart today"
    return restart(engine)


@shared_task(soft_time_limit=SOFT_LIMIT, time_limit=SOFT_LIMIT + 30)
def restart_engine(engine_id: int) -> str:
    """The dashboard's restart, on the engine's host: in place where soft restarts are allowed."""
    engine = Engine.objects.filter(pk=engine_id).first()
    return "skipped: engine gone" if engine is None else restart(engine)


def restart(engine: Engine) -> str:
    if engine.soft_restart:
        outcome = soft_restart.run(engine)
        if outcome.soft:
            return f"{engine.name}: soft restart in {outcome.seconds:.1f} s"
        supervisor.reconcile(engine.pk)
        return f"{engine.name}: full restart ({outcome.reason})"
    control.request_restart(engine)
    supervisor.reconcile(engine.pk)
    return f"restart of {engine.name} requested"


@worker_ready.connect
def _schedule_this_host(**kwargs):
    # A worker that starts on a new host brings that host's reconcile schedule with it.
    schedules.ensure_host_schedule(settings.GLMADMIN_HOST_NAME)
