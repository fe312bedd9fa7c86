"""What /metrics says about alerting (registered into glmadmin/exporter.py by alerts.apps)."""

from prometheus_client.core import GaugeMetricFamily

from . import silences


class SilenceCollector:
    def collect(self):
        family = GaugeMetricFamily("glmadmin_silences_active", "Silences active now (incidents they match notify "
                                   "nobody)")
        family.add_metric([], len(silences.active()))
        yield family
