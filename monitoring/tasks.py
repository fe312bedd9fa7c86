"""Beat tasks. Each is safe to skip, repeat or overlap: the schedules set an
expiry below the interval (a backlog after a worker outage is dropped, not
replayed), and a lock makes a second copy return at once."""

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings

from alerts.models import Incident
from glmadmin import jobs
from glmadmin.lib.redis import single_flight
from glmadmin.schedules import host_alerts_queue

from . import deadman, disk_check, disk_schedule, disk_watch
from .cleanup import service as cleanup
from .telemetry import remedy
from .telemetry import schedule as telemetry_schedule
from .telemetry import service as telemetry
from .telemetry.rules import watchdog as telemetry_watchdog

# --- disks: each host checks its own mounts, in its own alerts queue (alerts.<host>) ---

@shared_task(soft_time_limit=20, time_limit=30)
def check_disks(host: str | None = None) -> str:
    here = settings.GLMADMIN_HOST_NAME
    if host not in (None, here):  # statvfs here would read this host's mounts, not that host's
        return f"skipped: this worker is on host {here}, not {host}"
    with single_flight(f"check-disks:{here}", ttl_seconds=60) as acquired:
        if not acquired:
            return "skipped: another check is running"
        readings = disk_check.check_all()
        deadman.record_check()  # only a run that finished counts: a hung one leaves the heartbeat to age
    return f"checked {len(readings)} filesystem(s) on {here}"


@worker_ready.connect
def _check_this_hosts_disks(sender=None, **kwargs):
    # The worker that consumes this host's alerts queue brings the host's disk check schedule with it; other
    # workers (engines, notify) do not, so no schedule sends checks that no worker on the host would take.
    here = settings.GLMADMIN_HOST_NAME
    consumer = getattr(sender, "task_consumer", None)
    consumed = {queue.name for queue in getattr(consumer, "queues", None) or ()}
    if host_alerts_queue(here) in consumed:
        disk_schedule.ensure_host_schedule(here)
        _start_quick_disk_checks()


_quick_checks: list[disk_watch.Loop] = []


def _start_quick_disk_checks() -> None:
    # Between the full checks, this worker checks the host's disks twice a second from a thread of its main
    # process (disk_watch): a crossing reaches the pages in about a second, at a cost near nothing when idle.
    if settings.DISK_CHECK_SECONDS > 0 and not _quick_checks:
        _quick_checks.append(disk_watch.Loop(settings.DISK_CHECK_SECONDS).start())


@worker_shutdown.connect
def _stop_quick_disk_checks(**kwargs):
    while _quick_checks:
        _quick_checks.pop().stop()


@shared_task(soft_time_limit=300, time_limit=330)
def prune_history() -> str:
    return f"deleted {disk_check.prune_samples()} disk sample(s)"


# --- cleanup: a lock per root inside each run, so overlapping runs skip rather than double up ---

@shared_task(soft_time_limit=3600, time_limit=3660)
def run_cleanup(trigger: str = "schedule", incident_id: int | None = None) -> str:
    incident = Incident.objects.filter(pk=incident_id).first() if incident_id else None
    outcomes = cleanup.run_all(trigger=trigger, incident=incident)
    return "; ".join(str(o).splitlines()[0] for o in outcomes) or "no enabled policy"


@shared_task(soft_time_limit=600, time_limit=660)
def measure_cache() -> str:
    changed = cleanup.measure()
    cleanup.publish()
    return "cache size changed" if changed else "cache size unchanged"


# --- telemetry: each host samples itself, in its own queue; a cycle skips while the previous one runs ---

@shared_task(soft_time_limit=30, time_limit=45)
def sample_telemetry(host: str | None = None) -> str:
    here = settings.GLMADMIN_HOST_NAME
    if host not in (None, here):  # a worker consuming another host's queue would sample the wrong GPUs
        return f"skipped: this worker is on host {here}, not {host}"
    with single_flight(f"sample-telemetry:{here}", ttl_seconds=60) as acquired:
        if not acquired:
            return "skipped: the previous cycle is still running"
        cycle = telemetry.sample()
    return f"sampled {len(cycle.gpus)} GPU(s), {len(cycle.engines)} engine(s)"


@worker_ready.connect
def _sample_this_host(**kwargs):
    # A worker that starts on a new host brings that host's sampling schedule with it.
    telemetry_schedule.ensure_host_schedule(settings.GLMADMIN_HOST_NAME)


@shared_task(soft_time_limit=300, time_limit=330)
def downsample_telemetry() -> str:
    with single_flight("downsample-telemetry", ttl_seconds=600) as acquired:
        if not acquired:
            return "skipped: another run is in progress"
        return telemetry.maintain()


@shared_task(soft_time_limit=20, time_limit=30)
def watch_telemetry_flow() -> str:
    with single_flight("telemetry-watchdog", ttl_seconds=60) as acquired:
        if not acquired:
            return "skipped: another check is running"
        transitions = telemetry_watchdog.check_data_flow()
    return "; ".join(f"no-data incident {kind} on {host}" for host, kind in transitions) or "no change"


# --- the remedy ladder: one step per run, in the engine's host queue (engine control, never the alerting lane) ---
# Long enough for a soft restart: the drain (the engine's shutdown timeout) and three steps with deadlines.
REMEDY_LIMIT = 600


@shared_task(soft_time_limit=REMEDY_LIMIT, time_limit=REMEDY_LIMIT + 30)
def remedy_engine(plan: dict) -> str:
    return remedy.run(plan)


# The name this task had before it moved here; beat rows are migrated, queued messages still run.
jobs.alias("monitoring.telemetry.rule_tasks.watch_telemetry_flow", watch_telemetry_flow)
