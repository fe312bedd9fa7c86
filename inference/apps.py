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
