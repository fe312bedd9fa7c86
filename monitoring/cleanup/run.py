"""One recorded cleanup run of a policy: judge the root, lock, plan, remove, record, report.

run_policy() is what the beat task, the disk-alert trigger, the dashboard's
buttons and `manage.py clean_cache` call. The root is judged in its canonical
spelling (policy.checked_root) before anything else, and the lock belongs to the
directory itself (device and inode), so /a/b, /a/b/, //a/b and a path through a
symlink never run side by side. Names enter the record only through
safewalk.shown(): no name can break a page, a log line or a message.
"""

import hashlib
import heapq
import os
import time
from operator import itemgetter

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin.lib import filelock, openfiles, safewalk
from glmadmin.lib.safewalk import shown

from ..models import CleanupPolicy, CleanupRun
from . import journal
from .plan import Plan, plan
from .policy import Refused, checked_root

MAX_ERRORS = 50
MAX_NOTES = 50
LISTED_PROCESSES = 10  # of those the open-file check could not read; the rest are counted


class Busy(Exception):
    """Another cleanup of the same directory is running; this one did nothing."""


def lock_path(name: str):
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return settings.DATA_DIR / "locks" / f"cleanup-{digest}.lock"


def lock_for(root: str):
    """The lock of the directory root, whatever path leads to it; raises OSError if it cannot be stat'ed."""
    st = os.stat(root)
    return lock_path(f"dir:{st.st_dev}:{st.st_ino}")


def run_policy(policy: CleanupPolicy, *, trigger: str, dry_run: bool = False, incident: Incident | None = None,
               user=None, hook=None, now: float | None = None) -> CleanupRun:
    """Clean policy's root once; raises Busy if a cleanup of that directory is already running."""
    run = CleanupRun(kind=CleanupRun.Kind.CACHE, policy=policy, policy_name=policy.name, root=policy.root,
                     trigger=trigger, incident=incident, user=user, dry_run=dry_run, started_at=timezone.now(),
                     limit_bytes=policy.max_bytes)
    try:
        run.root = root = checked_root(policy.root)
        lock = lock_for(root)
    except (Refused, OSError) as exc:
        _unstarted(run, exc)
    else:
        with filelock.exclusive(lock) as acquired:
            if not acquired:
                raise Busy(f"another cleanup of {root} is running")
            run.save()
            try:
                _execute(run, policy, root, hook=hook, now=time.time() if now is None else now)
            except FileNotFoundError:
                _unstarted(run, FileNotFoundError())
            except OSError as exc:
                run.status = CleanupRun.Status.FAILED
                run.message = f"failed: cannot open {root}: {shown(exc.strerror or str(exc))}"
            finally:
                run.finished_at = timezone.now()
                run.save()
    journal.write(run, policy.log_level)
    if not dry_run:
        _report_room(run, policy)
    return run


def _unstarted(run: CleanupRun, why: Exception) -> None:
    """Record a run that never reached the files: a refused root (failed) or a missing one (nothing to do)."""
    if isinstance(why, FileNotFoundError):
        # A cache that was never created (vLLM not run yet) is not a failure.
        run.status = CleanupRun.Status.DONE
        run.message = f"{run.root} does not exist: nothing to clean"
    elif isinstance(why, Refused):
        run.status = CleanupRun.Status.FAILED
        run.message = f"refused: {why}"[:500]
    else:
        run.status = CleanupRun.Status.FAILED
        run.message = f"failed: cannot open {run.root}: {shown(getattr(why, 'strerror', None) or str(why))}"
    run.finished_at = timezone.now()
    run.save()


def _execute(run: CleanupRun, policy: CleanupPolicy, root: str, *, hook, now: float) -> None:
    # Under a disk alert the limit is moot: every file old enough and unused goes.
    limit = 0 if run.trigger == CleanupRun.Trigger.INCIDENT else policy.max_bytes
    run.limit_bytes = limit
    decided = plan(root, limit=limit, min_age_hours=policy.min_age_hours, include=policy.include,
                   exclude=policy.exclude, now=now)
    scan = decided.scan
    run.files_scanned = scan.count
    run.size_before = decided.size_before
    kept = {**scan.skipped, **decided.kept}
    errors = [list(e) for e in scan.errors]
    if run.dry_run:
        removed, freed = decided.chosen, decided.chosen_bytes
    else:
        removed = _remove(decided, hook, kept, errors)
        freed = sum(map(itemgetter(3), removed))
    run.files_removed = len(removed)
    run.bytes_freed = freed
    run.size_after = decided.size_before - freed
    run.removed = [[shown(scan.relpath(f[0], f[1])), f[3]] for f in oldest(removed, CleanupRun.MAX_LISTED)]
    run.skipped = kept
    run.error_count = len(errors)
    run.errors = errors[:MAX_ERRORS]
    run.notes = ([list(n) for n in scan.notes] + _unreadable_notes(decided, run.dry_run))[:MAX_NOTES]
    run.status = CleanupRun.Status.OVER_LIMIT if run.size_after > limit else CleanupRun.Status.DONE
    run.message = _summary(run, decided)
    CleanupPolicy.objects.filter(pk=policy.pk).update(last_size_bytes=run.size_after, last_size_at=timezone.now())


def oldest(files: list[tuple], n: int) -> list[tuple]:
    """The n oldest of files (by age stamp), oldest first: heapq.nsmallest's answer, for 100,000s of files in
    one cheap pass rather than nsmallest's key call and heap test per file.

    A sample of every 32nd file gives an age that about 3n of them reach at most; only those are ranked. If fewer
    than n do (ages bunched up in an unlucky order), the whole list is ranked after all.
    """
    if len(files) > 64 * n:
        sample = sorted(map(itemgetter(4), files[::32]))
        bound = sample[3 * n // 32]
        few = [f for f in files if f[4] <= bound]
        if len(few) >= n:
            files = few
    return heapq.nsmallest(n, files, key=itemgetter(4))


def _remove(decided: Plan, hook, kept: dict, errors: list) -> list[tuple]:
    """Unlink the chosen files; returns those removed."""
    scan = decided.scan
    removed, held, failed = safewalk.remove_all(scan, decided.chosen, decided.cutoff, hook=hook,
                                                all_seen=not decided.unreadable)
    for why, count in held.items():
        kept[why] = kept.get(why, 0) + count
    errors += ([shown(scan.relpath(f[0], f[1])), shown(exc.strerror or str(exc))] for f, exc in failed)
    return removed


def _unreadable_notes(decided: Plan, dry_run: bool) -> list[list[str]]:
    """What the open-file check could not see, and what the run did about it."""
    if not decided.unreadable:
        return []
    then = "will be" if dry_run else "was"
    why = (f"its open files are hidden from this worker (another user's process, seen without root or "
           f"CAP_SYS_PTRACE, or a more privileged one); each file {then} asked of the kernel before removal, and "
           "kept if open or if the kernel could not tell")
    notes = [[f"process {openfiles.owner(pid)}", why] for pid in decided.unreadable[:LISTED_PROCESSES]]
    if len(decided.unreadable) > LISTED_PROCESSES:
        notes.append([f"{len(decided.unreadable) - LISTED_PROCESSES} more process(es)", why])
    return notes


def _summary(run: CleanupRun, decided: Plan) -> str:
    verb = "would remove" if run.dry_run else "removed"
    text = (f"{verb} {run.files_removed} of {run.files_scanned} file(s), {_size(run.bytes_freed)}; "
            f"{_size(run.size_after)} left (limit {_size(run.limit_bytes)})")
    if run.status == CleanupRun.Status.OVER_LIMIT:
        text += ": still over the limit, nothing else may be removed"
    if decided.unreadable:
        text += f"; the open-file check could not read {len(decided.unreadable)} process(es)"
    if decided.scan.notes:
        text += f"; {len(decided.scan.notes)} mount point(s) not entered"
    if run.error_count:
        text += f"; {run.error_count} error(s), the first: {run.errors[0][0]}: {run.errors[0][1]}"
    return text[:500]


def _size(num_bytes: int | None) -> str:
    return "–" if num_bytes is None else filesizeformat(num_bytes)


def _report_room(run: CleanupRun, policy: CleanupPolicy) -> None:
    """A root cleanup cannot bring under its limit is an incident; it resolves when a run succeeds."""
    if run.status == CleanupRun.Status.FAILED or run.trigger == CleanupRun.Trigger.INCIDENT:
        return  # no verdict on the limit (a disk-alert run aims below it on purpose)
    over = run.status == CleanupRun.Status.OVER_LIMIT
    drive(f"cleanup:{policy.name}", Level.YELLOW if over else None, kind=Incident.Kind.CLEANUP,
          title=f"Cleanup cannot make room in {run.root}"[:200], value=None,
          message=(f"{policy.name}: {run.message}" if over else f"{policy.name}: back under the limit")[:500])
