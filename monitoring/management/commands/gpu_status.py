from django.core.management.base import BaseCommand, CommandError

from glmadmin.lib import nvml
from monitoring.telemetry import gpu_report


class Command(BaseCommand):
    help = "Show what NVML sees now: each GPU, and each process on it with its engine (or 'foreign')."

    def handle(self, *args, **options):
        try:
            lines = gpu_report.lines()
        except nvml.NvmlError as exc:
            raise CommandError(str(exc)) from exc
        for line in lines:
            self.stdout.write(line)
