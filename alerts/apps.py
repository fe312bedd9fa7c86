from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts and notifications"

    def ready(self):
        from glmadmin import exporter, poison
        from glmadmin import live as hub

        from . import dropped_tasks, live, prometheus

        hub.add_part("incidents", live.part, live.FALLBACK)
        poison.on_dropped(dropped_tasks.open_incident)
        exporter.register(prometheus.SilenceCollector())
