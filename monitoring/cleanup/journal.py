"""The cleanup log file (data/logs/cleanup.log): one line per run, and per file at DEBUG.

Opened and closed per run (never held open), so the log policy rotates it like any closed log.
Names arrive already shown safely (safewalk.shown); the file is written as UTF-8 with anything
unencodable escaped, so no text of a run can stop its line from being written.
"""

from django.conf import settings
from django.utils import timezone

from ..models import CleanupPolicy, CleanupRun


def path():
    return settings.DATA_DIR / "logs" / "cleanup.log"


def write(run: CleanupRun, level: str = CleanupPolicy.LogLevel.SUMMARY) -> None:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{timezone.localtime(run.started_at):%Y-%m-%d %H:%M:%S}"
    mode = " dry-run" if run.dry_run else ""
    lines = [f"{stamp} {run.kind} {run.policy_name}{mode} trigger={run.trigger} status={run.status} "
             f"scanned={run.files_scanned} removed={run.files_removed} freed={run.bytes_freed} "
             f"skipped={run.skipped} errors={run.error_count}: {run.message}"]
    if level == CleanupPolicy.LogLevel.FILES:
        verb = "would remove" if run.dry_run else "removed"
        lines += [f"{stamp}   {verb} {name} ({size} B)" for name, size in run.removed]
        lines += [f"{stamp}   error {name}: {error}" for name, error in run.errors]
        lines += [f"{stamp}   passed over {what}: {why}" for what, why in run.notes]
    with open(target, "a", encoding="utf-8", errors="backslashreplace") as fh:
        fh.write("\n".join(lines) + "\n")
