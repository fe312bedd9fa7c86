from django.conf import settings
from django.core.management.base import CommandError

from inference import control, soft_restart
from inference.models import EngineState

from ._engine_command import EngineCommand


class Command(EngineCommand):
    help = ("Restart engines gracefully (drain, stop, start) and wait until they are ready. "
            "--rolling restarts one at a time, the next only after the previous is ready again. "
            "--soft restarts in place through vLLM's sleep mode (seconds), and in full where that is not possible.")

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--rolling", action="store_true", help="one engine at a time")
        parser.add_argument("--soft", action="store_true",
                            help="drain, sleep, wake up, probe (engines with soft restarts allowed, on CUDA); "
                                 "a full restart when a step fails")

    def handle(self, *args, **options):
        engines = self.engines(options)
        if options["soft"]:
            for engine in engines:  # one at a time: each is drained and out of routing while it restarts
                self.soft(engine, options["timeout"])
        elif options["rolling"]:
            for engine in engines:
                self.wait([engine], {EngineState.READY}, options["timeout"],
                          {engine.pk: control.request_restart(engine)})
        else:
            generations = {engine.pk: control.request_restart(engine) for engine in engines}
            self.wait(engines, {EngineState.READY}, options["timeout"], generations)
        self.stdout.write(self.style.SUCCESS(f"ready: {', '.join(e.name for e in engines)}"))

    def soft(self, engine, timeout):
        if engine.host != settings.GLMADMIN_HOST_NAME:
            # The sleep and wake-up endpoints listen on the engine's own host only.
            raise CommandError(f"engine {engine.name} runs on host {engine.host}: run restart_engine --soft there")
        outcome = soft_restart.run(engine, lambda step, seconds: self.stdout.write(
            f"{seconds:7.1f}s  {engine.name}: {step}"))
        if outcome.soft:
            self.stdout.write(f"{engine.name}: soft restart in {outcome.seconds:.1f} s ({outcome.summary()})")
            if outcome.memory:  # GPU memory against the post-start baseline (monitoring's check, NVML)
                self.stdout.write(f"{engine.name}: {outcome.memory}")
            return
        self.stdout.write(f"{engine.name}: soft restart not possible: {outcome.reason}; full restart")
        self.wait([engine], {EngineState.READY}, timeout, {engine.pk: outcome.generation})
