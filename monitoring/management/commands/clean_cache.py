from django.core.management.base import BaseCommand, CommandError

from monitoring.cleanup.service import UnknownPolicy, run_all
from monitoring.models import CleanupRun


class Command(BaseCommand):
    help = "Run the cleanup policies once (all enabled ones, or one by name) and print what each run did."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would be removed; remove nothing.")
        parser.add_argument("--policy", metavar="NAME", help="Only this cleanup or log policy (even if disabled).")

    def handle(self, *args, dry_run, policy, **options):
        try:
            outcomes = run_all(trigger=CleanupRun.Trigger.COMMAND, dry_run=dry_run, policy_name=policy)
        except UnknownPolicy as exc:
            raise CommandError(str(exc)) from None
        if not outcomes:
            raise CommandError("no enabled policy: add one in the admin under Cleanup policies")
        for outcome in outcomes:
            self.stdout.write(str(outcome))
            if outcome.run and outcome.run.dry_run and outcome.run.removed:
                self.stdout.write("  would remove: " + ", ".join(name for name, _ in outcome.run.removed[:20])
                                  + (f" and {outcome.run.files_removed - 20} more" if outcome.run.files_removed > 20
                                     else ""))
        busy = [o for o in outcomes if o.busy]
        if busy and len(busy) == len(outcomes):
            raise CommandError(busy[0].busy)
