from django.apps import AppConfig


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = "Inference engines"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from . import schedules
        from .models import Engine

        post_save.connect(schedules.on_engine_saved, sender=Engine, dispatch_uid="engine-daily-restart")
        post_delete.connect(schedules.on_engine_deleted, sender=Engine, dispatch_uid="engine-daily-restart-delete")

        from glmadmin import exporter
        from glmadmin import live as hub

        from . import live, restart_metrics
        from .gateway import keys, prometheus, routing
        from .models import ApiKey

        # The gateway reads engines and keys from Redis: every change is written there.
        for signal in (post_save, post_delete):
            signal.connect(routing.on_change, sender=Engine, dispatch_uid=f"gateway-routes-{signal is post_save}")
            signal.connect(keys.on_change, sender=ApiKey, dispatch_uid=f"gateway-keys-{signal is post_save}")
        exporter.register(prometheus.GatewayCollector())
        exporter.register(restart_metrics.RestartCollector())
        hub.add_part("engines", live.part, live.FALLBACK)
