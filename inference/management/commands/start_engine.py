from inference import control
from inference.models import EngineState

from ._engine_command import EngineCommand


class Command(EngineCommand):
    help = "Start engines (they stay enabled) and wait until they are ready."

    def handle(self, *args, **options):
        engines = self.engines(options)
        for engine in engines:
            control.request_start(engine)
        self.wait(engines, {EngineState.READY}, options["timeout"])
        self.stdout.write(self.style.SUCCESS(f"ready: {', '.join(e.name for e in engines)}"))
