from django.core.management.base import BaseCommand, CommandError

from alerts.levels import Level
from monitoring.disk_check import simulate


class Command(BaseCommand):
    help = "Fire a simulated disk alert through the real alert path (marked as a test), or clear it."

    def add_arguments(self, parser):
        parser.add_argument("--level", choices=Level.values, help="the level to simulate")
        parser.add_argument("--clear", action="store_true", help="resolve the simulated alert")

    def handle(self, *args, level=None, clear=False, **options):
        if bool(level) == clear:
            raise CommandError("give exactly one of --level yellow|orange|red or --clear")
        transition = simulate(None if clear else level)
        if transition is None:
            self.stdout.write("nothing changed: the simulated alert is already in that state")
        else:
            incident = transition.incident
            state = "cleared" if transition.kind == "resolved" else f"{incident.level}: {incident.message}"
            self.stdout.write(f"test alert {transition.kind} ({state})")
