"""Engine restarts in numbers, on /metrics (RestartCollector, registered into glmadmin/exporter.py by
inference.apps) and on the dashboard's engine panel: how often each engine was restarted in full and in place,
and how long the last of each took.

A soft restart times itself (drain to probe, Engine.last_soft_restart_seconds). A full restart is timed from its
events: from the event that took the engine out of service (the drain of a restart, a crash, a soft restart that
fell back) to its next "ready" after a start. A stop by an operator followed by a start is no restart.
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .models import Engine, EngineEvent
from .models import EngineState as S

IN_SERVICE = [S.READY, S.SOFT_RESTART, S.UNHEALTHY]  # what a restart takes an engine out of
NOT_A_RESTART = "disabled"  # the reason of a stop asked for by an operator (supervisor._step)


def last_full_restart_seconds(engine_id: int) -> float | None:
    """How long the engine's last full restart took, from leaving service to ready again; None if it had none."""
    ready = (EngineEvent.objects.filter(engine_id=engine_id, state=S.READY, previous=S.STARTING)
             .order_by("-pk").values_list("pk", "at").first())
    if ready is None:
        return None
    left = (EngineEvent.objects.filter(engine_id=engine_id, pk__lt=ready[0], previous__in=IN_SERVICE)
            .exclude(state__in=IN_SERVICE).order_by("-pk").values_list("at", "reason").first())
    if left is None or left[1] == NOT_A_RESTART:
        return None  # its first start, or a start after an operator's stop
    return (ready[1] - left[0]).total_seconds()


def restart_history(engine_id: int, limit: int = 20, scan: int = 500) -> list[dict]:
    """The engine's restarts, newest first, from its last `scan` events: each with when and why it left service
    (the reason of that event: "restart requested", a crash, a failed soft restart), whether it was soft, and how
    long it took to be ready again (None while it is not). A stop by an operator and the start after it are no
    restart, as for last_full_restart_seconds."""
    events = list(EngineEvent.objects.filter(engine_id=engine_id).order_by("-pk")[:scan])[::-1]
    restarts, left, soft = [], None, None
    for event in events:
        if event.state == S.SOFT_RESTART and event.previous == S.READY:
            soft = event
        elif event.previous in IN_SERVICE and event.state not in IN_SERVICE:
            left, soft = event, None  # out of service: a restart's drain, a crash, a soft restart that fell back
        elif event.state == S.READY and event.previous == S.SOFT_RESTART and soft is not None:
            restarts.append({"at": soft.at, "reason": soft.reason, "soft": True,
                             "seconds": (event.at - soft.at).total_seconds()})
            soft = None
        elif event.state == S.READY and event.previous == S.STARTING and left is not None:
            if left.reason != NOT_A_RESTART:
                restarts.append({"at": left.at, "reason": left.reason, "soft": False,
                                 "seconds": (event.at - left.at).total_seconds()})
            left = None
    pending = soft or (left if left is not None and left.reason != NOT_A_RESTART else None)
    if pending is not None:  # under way (or failed): not ready since
        restarts.append({"at": pending.at, "reason": pending.reason, "soft": pending is soft, "seconds": None})
    return restarts[::-1][:limit]


class RestartCollector:
    def collect(self):
        full = CounterMetricFamily("glmadmin_engine_restarts", "Starts of an engine after its first (full restarts, "
                                   "crashes restarted)", labels=["engine", "host"])
        soft = CounterMetricFamily("glmadmin_engine_soft_restarts", "Soft restarts (sleep mode) of an engine",
                                   labels=["engine", "host"])
        last = GaugeMetricFamily("glmadmin_engine_last_soft_restart_seconds", "How long an engine's last soft "
                                 "restart took, from the drain to the probe", labels=["engine", "host"])
        last_full = GaugeMetricFamily("glmadmin_engine_last_restart_seconds", "How long an engine's last full "
                                      "restart took, from leaving service (drain or crash) to ready again",
                                      labels=["engine", "host"])
        for pk, name, host, restarts, soft_restarts, seconds in Engine.objects.values_list(
                "pk", "name", "host", "restarts", "soft_restarts", "last_soft_restart_seconds"):
            full.add_metric([name, host], restarts)
            soft.add_metric([name, host], soft_restarts)
            if seconds is not None:
                last.add_metric([name, host], seconds)
            full_seconds = last_full_restart_seconds(pk) if restarts else None
            if full_seconds is not None:
                last_full.add_metric([name, host], full_seconds)
        yield from (full, soft, last, last_full)
