from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from django.db.models.signals import post_save

        from glmadmin import live as hub

        from . import live
        from .models import TelemetrySettings
        from .telemetry import schedule

        hub.add_part(live.part)
        hub.add_fragment("telemetry", live.telemetry_fragment)
        # Beat reads its schedule from the database: a new sampling interval moves every host's schedule.
        post_save.connect(schedule.on_settings_saved, sender=TelemetrySettings, dispatch_uid="telemetry-interval")
