from inference import control
from inference.models import EngineState

from ._engine_command import EngineCommand


class Command(EngineCommand):
    help = ("Restart engines gracefully (drain, stop, start) and wait until they are ready. "
            "--rolling restarts one at a time, the next only after the previous is ready again.")

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--rolling", action="store_true", help="one engine at a time")

    def handle(self, *args, **options):
        engines = self.engines(options)
        if options["rolling"]:
            for engine in engines:
                self.wait([engine], {EngineState.READY}, options["timeout"],
                          {engine.pk: control.request_restart(engine)})
        else:
            generations = {engine.pk: control.request_restart(engine) for engine in engines}
            self.wait(engines, {EngineState.READY}, options["timeout"], generations)
        self.stdout.write(self.style.SUCCESS(f"ready: {', '.join(e.name for e in engines)}"))
