"""What /metrics says about alerting (registered into glmadmin/exporter.py by alerts.apps)."""

from prometheus_client.core import GaugeMetricFamily

from . import inhibition, silences


class SilenceCollector:
    """Alerts kept quiet on purpose: active silences and windows, and incidents inhibited by a red disk."""

    def collect(self):
        family = GaugeMetricFamily("glmadmin_silences_active", "Silences active now (incidents they match notify "
                                   "nobody)")
        family.add_metric([], len(silences.active()))
        yield family
        family = GaugeMetricFamily("glmadmin_inhibited_incidents", "Open engine and telemetry incidents whose "
                                   "notifications a red disk on their host holds back (its echoes)")
        family.add_metric([], len(inhibition.inhibited()))
        yield family
