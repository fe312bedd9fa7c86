"""What the engine commands share: selecting engines, waiting with progress, one-line errors."""

import time

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import control


class EngineCommand(BaseCommand):
    default_timeout = 900

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help="engine names")
        parser.add_argument("--all", action="store_true", dest="all_engines", help="every engine")
        parser.add_argument("--timeout", type=float, default=self.default_timeout,
                            help=f"seconds to wait per engine (default {self.default_timeout})")

    def engines(self, options):
        if options["names"] and options["all_engines"]:
            raise CommandError("give engine names or --all, not both")
        try:
            return control.select(options["names"], options["all_engines"])
        except control.EngineError as exc:
            raise CommandError(str(exc)) from None

    def wait(self, engines, until, timeout, generations=None):
        started = time.monotonic()

        def report(engine, event):
            reason = f"  ({event.reason})" if event.reason else ""
            self.stdout.write(f"{time.monotonic() - started:7.1f}s  {engine.name}: {event.state}{reason}")

        try:
            control.wait(engines, until, timeout, report, generations)
        except control.EngineError as exc:
            raise CommandError(str(exc)) from None
        except redis.exceptions.ConnectionError as exc:
            raise CommandError(f"cannot reach Redis at {settings.REDIS_URL}: {exc}") from None
