from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from monitoring.disk_check import check_all


class Command(BaseCommand):
    help = ("Check every watched filesystem of this host (GLMADMIN_HOST_NAME) once, update incidents and print "
            "the result.")

    def handle(self, *args, **options):
        readings = check_all()
        if not readings:
            raise CommandError(f"no filesystem of host {settings.GLMADMIN_HOST_NAME} is watched: add one in the "
                               "admin under Watched filesystems")
        for r in readings:
            if r.error:
                change = f"  ({r.transition.incident.level} incident {r.transition.kind})" if r.transition else ""
                line = f"{r.filesystem.label:<12} {r.filesystem.path:<30} ERROR  {r.error}{change}"
            else:
                change = f"  ({r.transition.kind})" if r.transition else ""
                if r.pending:
                    change += f"  ({r.pending.level} pending, needs {r.pending.for_seconds} s)"
                line = f"{r.filesystem.label:<12} {r.filesystem.path:<30} {r.percent:5.1f} %  {r.level or 'ok'}{change}"
            self.stdout.write(line)
        errors = [r.error for r in readings if r.error]
        if errors:
            raise CommandError(errors[0])
