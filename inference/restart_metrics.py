"""What /metrics says about engine restarts (registered into glmadmin/exporter.py by inference.apps): how often
each engine was restarted in full and in place, and how long its last soft restart took."""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .models import Engine


class RestartCollector:
    def collect(self):
        full = CounterMetricFamily("glmadmin_engine_restarts", "Starts of an engine after its first (full restarts, "
                                   "crashes restarted)", labels=["engine", "host"])
        soft = CounterMetricFamily("glmadmin_engine_soft_restarts", "Soft restarts (sleep mode) of an engine",
                                   labels=["engine", "host"])
        last = GaugeMetricFamily("glmadmin_engine_last_soft_restart_seconds", "How long an engine's last soft "
                                 "restart took, from the drain to the probe", labels=["engine", "host"])
        for name, host, restarts, soft_restarts, seconds in Engine.objects.values_list(
                "name", "host", "restarts", "soft_restarts", "last_soft_restart_seconds"):
            full.add_metric([name, host], restarts)
            soft.add_metric([name, host], soft_restarts)
            if seconds is not None:
                last.add_metric([name, host], seconds)
        yield from (full, soft, last)
