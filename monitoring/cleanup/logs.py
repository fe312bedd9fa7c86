"""Log policies: the settings file the live log writers read, and rotation of closed log files.

Engine logs are written by glmadmin/lib/logwriter.py, which rotates them
itself by renaming at a line end; it reads its limits from
data/log-policies.json, rewritten here whenever a log policy changes (so no
engine needs a restart). Log files nobody holds open are rotated by each
cleanup run. A file some other process holds open is left alone and reported:
renaming it would not shrink it, and copying-then-truncating loses the lines
written in between.
"""

import glob
import json
import os
import stat

from django.utils import timezone

from glmadmin.lib import filelock, openfiles
from glmadmin.lib.logwriter import gzip_file
from glmadmin.lib.processes import default_log_config

from ..models import CleanupRun, LogPolicy
from .policy import split_patterns
from .run import Busy, lock_path

MAX_ERRORS = 50


def write_config() -> None:
    """Write the enabled log policies for the log writers (atomically: a writer never reads half a file)."""
    policies = [{"name": p.name, "patterns": split_patterns(p.patterns), "max_bytes": p.max_bytes, "keep": p.keep,
                 "compress": p.compress} for p in LogPolicy.objects.filter(enabled=True)]
    target = default_log_config()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(policies, indent=1))
    os.replace(tmp, target)


def rotated(path: str) -> list[tuple[int, str]]:
    """(number, path) of path's rotated files: path.1, path.2.gz, ..."""
    found = []
    for candidate in glob.glob(glob.escape(path) + ".*"):
        number = candidate[len(path) + 1:].removesuffix(".gz")
        if number.isdigit():
            found.append((int(number), candidate))
    return sorted(found)


def rotate_closed(path: str, keep: int, compress: bool) -> None:
    for number, older in reversed(rotated(path)):
        if number >= keep:
            os.unlink(older)
        else:
            os.rename(older, f"{path}.{number + 1}{'.gz' if older.endswith('.gz') else ''}")
    if keep:
        os.rename(path, f"{path}.1")
        if compress:
            gzip_file(f"{path}.1")
    else:
        os.unlink(path)


def maintain(policy: LogPolicy, *, trigger: str, dry_run: bool = False, incident=None, user=None) -> CleanupRun:
    """Rotate the policy's closed log files over the size limit and remove rotated files beyond `keep`."""
    write_config()
    with filelock.exclusive(lock_path(f"logs:{policy.name}")) as acquired:
        if not acquired:
            raise Busy(f"another rotation of the {policy.name} logs is running")
        run = CleanupRun(kind=CleanupRun.Kind.LOGS, log_policy=policy, policy_name=policy.name, trigger=trigger,
                         incident=incident, user=user, dry_run=dry_run, started_at=timezone.now(),
                         limit_bytes=policy.max_bytes, root=", ".join(split_patterns(policy.patterns))[:500])
        busy = openfiles.open_inodes()
        kept, errors, removed, freed = {}, [], [], 0
        for path in sorted({p for pattern in split_patterns(policy.patterns) for p in glob.glob(pattern)}):
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    kept["not_a_regular_file"] = kept.get("not_a_regular_file", 0) + 1
                    continue
                run.files_scanned += 1
                for number, older in rotated(path):
                    if number > policy.keep:
                        removed.append([older, os.lstat(older).st_size])
                        freed += removed[-1][1]
                        if not dry_run:
                            os.unlink(older)
                if st.st_size <= policy.max_bytes:
                    continue
                if (st.st_dev, st.st_ino) in busy:
                    # Its writer rotates it (engine logs), or it is a foreign writer we must not cut.
                    kept["open_by_writer"] = kept.get("open_by_writer", 0) + 1
                    continue
                removed.append([f"{path} (rotated)", st.st_size])
                if not dry_run:
                    rotate_closed(path, policy.keep, policy.compress)
            except OSError as exc:
                errors.append([path, exc.strerror or str(exc)])
        run.files_removed = len(removed)
        run.bytes_freed = freed  # rotating frees nothing by itself (gzip aside); removing old rotations does
        run.removed = removed[:CleanupRun.MAX_LISTED]
        run.skipped, run.errors, run.error_count = kept, errors[:MAX_ERRORS], len(errors)
        run.status = CleanupRun.Status.DONE
        run.message = f"{run.files_scanned} log file(s), {len(removed)} rotated or removed"
        run.finished_at = timezone.now()
        run.save()
    return run
