from inference import control
from inference.models import EngineState

from ._engine_command import EngineCommand


class Command(EngineCommand):
    help = "Stop engines gracefully (drain in-flight requests, then terminate) and keep them stopped."
    default_timeout = 300

    def handle(self, *args, **options):
        engines = self.engines(options)
        for engine in engines:
            control.request_stop(engine)
        self.wait(engines, {EngineState.STOPPED, EngineState.FAILED}, options["timeout"])
        self.stdout.write(self.style.SUCCESS(f"stopped: {', '.join(e.name for e in engines)}"))
