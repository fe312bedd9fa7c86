"""Beat task of the telemetry rules (imported by monitoring.tasks, so Celery registers it)."""

from celery import shared_task

from glmadmin.lib.redis import single_flight

from . import rule_watchdog


@shared_task
def watch_telemetry_flow() -> str:
    # Safe to skip or overlap: the schedule expires below its interval, and a second copy returns.
    with single_flight("telemetry-watchdog", ttl_seconds=60) as acquired:
        if not acquired:
            return "skipped: another check is running"
        transitions = rule_watchdog.check_data_flow()
    return "; ".join(f"no-data incident {kind} on {host}" for host, kind in transitions) or "no change"
