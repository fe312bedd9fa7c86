from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import control
from inference.models import Engine
from monitoring.telemetry import diagnose


class Command(BaseCommand):
    help = ("Memory diagnosis of an engine (every engine of this host without a name): its GPU memory against "
            "what it reserved, foreign processes, tensor-parallel balance, KV cache, preemptions, long prompts "
            "and out-of-memory lines in its log, each with a verdict.")

    def add_arguments(self, parser):
        parser.add_argument("engine", nargs="?", help="the engine's name")

    def handle(self, *args, **options):
        try:
            engines = (control.select([options["engine"]]) if options["engine"] else
                       list(Engine.objects.filter(host=settings.GLMADMIN_HOST_NAME).order_by("name")))
        except control.EngineError as exc:
            raise CommandError(str(exc)) from exc
        if not engines:
            raise CommandError(f"no engine on host {settings.GLMADMIN_HOST_NAME}: name one")
        elsewhere = [e for e in engines if e.host != settings.GLMADMIN_HOST_NAME]
        if elsewhere:  # NVML and the log are this host's
            raise CommandError(f"engine {elsewhere[0].name} runs on host {elsewhere[0].host}: run diagnose there")
        for number, engine in enumerate(engines):
            if number:
                self.stdout.write("")
            for line in diagnose.lines(engine):
                self.stdout.write(line)
