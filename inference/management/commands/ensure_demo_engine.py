from django.core.management.base import BaseCommand

from inference import demo


class Command(BaseCommand):
    help = "On a machine without an NVIDIA GPU and with no engines yet, define the demo engine."

    def handle(self, *args, **options):
        engine = demo.ensure_demo_engine()
        if engine:
            self.stdout.write(f"demo engine {engine.name!r} defined on port {engine.port} "
                              "(a tiny random model: its output is noise)")
