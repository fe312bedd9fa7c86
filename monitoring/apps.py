from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from glmadmin import live as hub
        from inference import engine_page, soft_restart

        from . import dashboard, deadman, live, watched
        from .models import TelemetrySettings, WatchedFilesystem
        from .telemetry import engine_charts, remedy, schedule

        hub.add_part("disks", live.disks, live.DISKS_FALLBACK)
        hub.add_part("telemetry", live.telemetry, live.TELEMETRY_FALLBACK)
        dashboard.register(hub)  # the dashboard's cards, telemetry among them, sent to open dashboards only
        hub.add_part("check heartbeat", deadman.part, deadman.FALLBACK)  # "monitoring stalled since ..."
        engine_page.add_section(engine_charts.render)  # the engine page's metrics charts
        # After each soft restart: is the engine's GPU memory back to its post-start baseline (NVML per process)?
        soft_restart.restarted_in_place.connect(remedy.memory_after_soft_restart, dispatch_uid="soft-restart-memory")
        # Beat reads its schedule from the database: a new sampling interval moves every host's schedule.
        post_save.connect(schedule.on_settings_saved, sender=TelemetrySettings, dispatch_uid="telemetry-interval")
        # A deleted, disabled or re-pathed filesystem resolves its open incident (and lifts its red pause).
        post_save.connect(watched.on_change, sender=WatchedFilesystem, dispatch_uid="watched-saved")
        post_delete.connect(watched.on_change, sender=WatchedFilesystem, dispatch_uid="watched-deleted")
        # The disk checks keep the rows between runs: a change makes them read the rows again at their next run.
        from . import disk_check

        post_save.connect(disk_check.forget_config, sender=WatchedFilesystem, dispatch_uid="watched-config-saved")
        post_delete.connect(disk_check.forget_config, sender=WatchedFilesystem, dispatch_uid="watched-config-deleted")
