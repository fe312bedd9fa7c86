import time
from collections import deque

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import control, supervisor


class Command(BaseCommand):
    help = "Print the last lines of an engine's log; -f keeps following it."

    def add_arguments(self, parser):
        parser.add_argument("name", metavar="NAME")
        parser.add_argument("-n", "--lines", type=int, default=50)
        parser.add_argument("-f", "--follow", action="store_true")

    def handle(self, *args, name, lines, follow, **options):
        try:
            (engine,) = control.select([name])
        except control.EngineError as exc:
            raise CommandError(str(exc)) from None
        if engine.host != settings.GLMADMIN_HOST_NAME:
            raise CommandError(f"engine {name} runs on host {engine.host}: read its log there")
        path = supervisor.log_file(engine)
        try:
            fh = open(path, errors="replace")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            raise CommandError(f"engine {name} has no log yet ({path}): it has not been started here") from None
        with fh:
            for line in deque(fh, maxlen=max(lines, 0)):
                self.stdout.write(line, ending="")
            while follow:
                line = fh.readline()
                if line:
                    self.stdout.write(line, ending="")
                    self.stdout.flush()
                else:
                    time.sleep(0.2)  # tail -f's pace: wait for the engine to write more
