"""One recorded cleanup run of a policy: lock, plan, remove, record, report.

run_policy() is what the beat task, the disk-alert trigger, the dashboard's
buttons and `manage.py clean_cache` call.
"""

import hashlib
import logging
import time

from django.conf import settings
from django.utils import timezone

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin.lib import filelock, safewalk

from ..models import CleanupPolicy, CleanupRun
from . import journal
from .plan import Kept, plan

log = logging.getLogger(__name__)
MAX_ERRORS = 50


class Busy(Exception):
    """Another cleanup of the same root is running; this one did nothing."""


def lock_path(name: str):
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return settings.DATA_DIR / "locks" / f"cleanup-{digest}.lock"


def run_policy(policy: CleanupPolicy, *, trigger: str, dry_run: bool = False, incident: Incident | None = None,
               user=None, hook=None, now: float | None = None) -> CleanupRun:
    """Clean policy's root once; raises Busy if a cleanup of that root is already running."""
    with filelock.exclusive(lock_path(policy.root)) as acquired:
        if not acquired:
            raise Busy(f"another cleanup of {policy.root} is running")
        run = CleanupRun.objects.create(
            kind=CleanupRun.Kind.CACHE, policy=policy, policy_name=policy.name, root=policy.root, trigger=trigger,
            incident=incident, user=user, dry_run=dry_run, started_at=timezone.now(), limit_bytes=policy.max_bytes)
        try:
            _execute(run, policy, hook=hook, now=time.time() if now is None else now)
        except FileNotFoundError:
            # A cache that was never created (vLLM not run yet) is not a failure.
            run.status = CleanupRun.Status.DONE
            run.message = f"{policy.root} does not exist: nothing to clean"
        except OSError as exc:
            run.status = CleanupRun.Status.FAILED
            run.message = f"failed: cannot open {policy.root}: {exc.strerror or exc}"
        finally:
            run.finished_at = timezone.now()
            run.save()
    journal.write(run, policy.log_level)
    if not dry_run:
        _report_room(run, policy)
    return run


def _execute(run: CleanupRun, policy: CleanupPolicy, *, hook, now: float) -> None:
    # Under a disk alert the limit is moot: every file old enough and unused goes.
    limit = 0 if run.trigger == CleanupRun.Trigger.INCIDENT else policy.max_bytes
    run.limit_bytes = limit
    decided = plan(policy.root, limit=limit, min_age_hours=policy.min_age_hours, include=policy.include,
                   exclude=policy.exclude, now=now)
    scan = decided.scan
    run.files_scanned = len(scan.files)
    run.size_before = decided.size_before
    kept = {**scan.skipped, **decided.kept}
    errors = [list(e) for e in scan.errors]
    removed, freed = [], 0
    if run.dry_run:
        removed = decided.chosen
        freed = decided.bytes_chosen
    else:
        with safewalk.Remover(scan, hook=hook) as remover:
            for f in decided.chosen:
                try:
                    why = remover.unlink(f[0], f[1], f[2], not_after=decided.cutoff)
                except FileNotFoundError:
                    continue  # gone already: someone else cleaned it
                except OSError as exc:
                    errors.append([scan.relpath(f[0], f[1]), exc.strerror or str(exc)])
                    continue
                if why:
                    kept[Kept.CHANGED] = kept.get(Kept.CHANGED, 0) + 1
                    continue
                removed.append(f)
                freed += f[3]
    run.files_removed = len(removed)
    run.bytes_freed = freed
    run.size_after = decided.size_before - freed
    run.removed = [[scan.relpath(f[0], f[1]), f[3]] for f in removed[:CleanupRun.MAX_LISTED]]
    run.skipped = kept
    run.error_count = len(errors)
    run.errors = errors[:MAX_ERRORS]
    over = run.size_after > limit
    run.status = CleanupRun.Status.OVER_LIMIT if over else CleanupRun.Status.DONE
    run.message = _summary(run)
    CleanupPolicy.objects.filter(pk=policy.pk).update(last_size_bytes=run.size_after, last_size_at=timezone.now())


def _summary(run: CleanupRun) -> str:
    from ..templatetags.monitoring_tags import gib

    verb = "would remove" if run.dry_run else "removed"
    text = (f"{verb} {run.files_removed} of {run.files_scanned} file(s), {gib(run.bytes_freed)}; "
            f"{gib(run.size_after)} left (limit {gib(run.limit_bytes)})")
    if run.status == CleanupRun.Status.OVER_LIMIT:
        text += ": still over the limit, nothing else may be removed"
    if run.error_count:
        text += f"; {run.error_count} error(s)"
    return text


def _report_room(run: CleanupRun, policy: CleanupPolicy) -> None:
    """A root cleanup cannot bring under its limit is an incident; it resolves when a run succeeds."""
    if run.status == CleanupRun.Status.FAILED or run.trigger == CleanupRun.Trigger.INCIDENT:
        return  # no verdict on the limit (a disk-alert run aims below it on purpose)
    over = run.status == CleanupRun.Status.OVER_LIMIT
    drive(f"cleanup:{policy.name}", Level.YELLOW if over else None, kind=Incident.Kind.CLEANUP,
          title=f"Cleanup cannot make room in {policy.root}", value=None,
          message=f"{policy.name}: {run.message}" if over else f"{policy.name}: back under the limit")
