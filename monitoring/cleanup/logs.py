"""Log policies: the settings file the live log writers read, and rotation of closed log files.

Engine logs are written by glmadmin/lib/logwriter.py, which rotates them
itself by renaming at a line end; it reads its limits from
data/log-policies.json, rewritten here whenever a log policy changes (so no
engine needs a restart). Log files nobody holds open are rotated by each
cleanup run. A file some other process holds open is left alone and reported:
renaming it would not shrink it, and copying-then-truncating loses the lines
written in between.

Patterns are judged like cleanup roots (policy.log_pattern_problem: canonical,
in an allowed directory, never matching glmadmin's own files) at every run. A
match reached through a symlink is left alone; every rename and unlink happens
relative to a descriptor of the log's directory opened without following any
symlink; glmadmin's own files are recognised by identity (device, inode) too;
and only name.1 .. name.100 (optionally .gz) count as rotations.
"""

import glob
import gzip
import json
import os
import shutil
import stat
from dataclasses import dataclass, field

from django.utils import timezone

from glmadmin.lib import filelock, openfiles, safewalk
from glmadmin.lib.processes import default_log_config
from glmadmin.lib.safewalk import shown

from ..models import CleanupRun, LogPolicy
from .policy import MAX_KEEP, canonical_pattern, log_pattern_problem, own_identities, split_patterns
from .run import Busy, lock_path

MAX_ERRORS = 50
CHUNK = 1024 * 1024


@dataclass
class _Tally:
    scanned: int = 0
    freed: int = 0
    kept: dict = field(default_factory=dict)
    removed: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def keep(self, reason: str) -> None:
        self.kept[reason] = self.kept.get(reason, 0) + 1


def write_config() -> None:
    """Write the enabled log policies for the log writers (atomically: a writer never reads half a file)."""
    policies = [{"name": p.name, "patterns": split_patterns(p.patterns), "max_bytes": p.max_bytes, "keep": p.keep,
                 "compress": p.compress} for p in LogPolicy.objects.filter(enabled=True)]
    target = default_log_config()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(policies, indent=1))
    os.replace(tmp, target)


def rotated_at(dir_fd: int, name: str) -> list[tuple[int, str]]:
    """(number, name) of name's rotated files in the directory dir_fd: name.1, name.2.gz, ... up to MAX_KEEP."""
    found = []
    for candidate in os.listdir(dir_fd):
        if candidate.startswith(name + "."):
            number = candidate[len(name) + 1:].removesuffix(".gz")
            # name.007 or name.20250101 is some other file, not one of our rotations.
            if number.isdigit() and str(int(number)) == number and 1 <= int(number) <= MAX_KEEP:
                found.append((int(number), candidate))
    return sorted(found)


def maintain(policy: LogPolicy, *, trigger: str, dry_run: bool = False, incident=None, user=None) -> CleanupRun:
    """Rotate the policy's closed log files over the size limit and remove rotated files beyond `keep`."""
    write_config()
    with filelock.exclusive(lock_path(f"logs:{policy.name}")) as acquired:
        if not acquired:
            raise Busy(f"another rotation of the {policy.name} logs is running")
        run = CleanupRun(kind=CleanupRun.Kind.LOGS, log_policy=policy, policy_name=policy.name, trigger=trigger,
                         incident=incident, user=user, dry_run=dry_run, started_at=timezone.now(),
                         limit_bytes=policy.max_bytes, root=", ".join(split_patterns(policy.patterns))[:500])
        patterns = split_patterns(policy.patterns)
        problems = [problem for problem in map(log_pattern_problem, patterns) if problem]
        if problems:
            run.status = CleanupRun.Status.FAILED
            run.message = f"refused: {problems[0]}"[:500]
        else:
            _rotate_all(run, policy, [canonical_pattern(p) for p in patterns])
        run.finished_at = timezone.now()
        run.save()
    return run


def _rotate_all(run: CleanupRun, policy: LogPolicy, patterns: list[str]) -> None:
    busy, own, tally = openfiles.open_inodes(), own_identities(), _Tally()
    for path in sorted({p for pattern in patterns for p in glob.glob(pattern)}):
        try:
            _one_log(path, policy, run.dry_run, busy, own, tally)
        except OSError as exc:
            tally.errors.append([shown(path), shown(exc.strerror or str(exc))])
    run.files_scanned = tally.scanned
    run.files_removed = len(tally.removed)
    run.bytes_freed = tally.freed  # rotating frees nothing by itself (gzip aside); removing old rotations does
    run.removed = tally.removed[:CleanupRun.MAX_LISTED]
    run.skipped, run.errors, run.error_count = tally.kept, tally.errors[:MAX_ERRORS], len(tally.errors)
    run.status = CleanupRun.Status.DONE
    run.message = f"{tally.scanned} log file(s), {len(tally.removed)} rotated or removed"
    if busy.unreadable:
        run.message += (f"; the open-file check could not read {len(busy.unreadable)} process(es): a log the "
                        "kernel could not be asked about was kept")


def _one_log(path: str, policy: LogPolicy, dry_run: bool, busy, own, tally: _Tally) -> None:
    directory, name = os.path.split(path)
    if os.path.realpath(path) != path:
        tally.keep("symlink")  # the file, or a directory the glob went through: it may lead anywhere
        return
    dir_fd = safewalk.open_root(directory)  # and nothing on the way became a symlink since
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            tally.keep("not_a_regular_file")
            return
        if (st.st_dev, st.st_ino) in own:
            tally.keep("glmadmin_own_file")
            return
        tally.scanned += 1
        _drop_old_rotations(dir_fd, directory, name, policy.keep, dry_run, own, tally)
        if st.st_size <= policy.max_bytes:
            return
        held = _held(dir_fd, name, st, busy)
        if held:
            tally.keep(held)  # its writer rotates it (engine logs), or it is a foreign writer we must not cut
            return
        tally.removed.append([f"{shown(path)} (rotated)", st.st_size])
        if not dry_run:
            _rotate_at(dir_fd, name, policy.keep, policy.compress)
    finally:
        os.close(dir_fd)


def _drop_old_rotations(dir_fd, directory, name, keep, dry_run, own, tally: _Tally) -> None:
    for number, older in rotated_at(dir_fd, name):
        if number <= keep:
            continue
        st = os.stat(older, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in own:
            continue
        tally.removed.append([shown(f"{directory}/{older}"), st.st_size])
        tally.freed += st.st_size
        if not dry_run:
            os.unlink(older, dir_fd=dir_fd)


def _held(dir_fd: int, name: str, st: os.stat_result, busy: openfiles.OpenFiles) -> str | None:
    """Why the log cannot be rotated now: 'open_by_writer', 'open_unknown', or None."""
    try:
        fd = os.open(name, safewalk.FILE_FLAGS, dir_fd=dir_fd)
    except BlockingIOError:
        return "open_by_writer"
    except PermissionError:
        fd = None
    try:
        unused = openfiles.unused(fd) if fd is not None and os.fstat(fd).st_ino == st.st_ino else None
    finally:
        if fd is not None:
            os.close(fd)
    if unused is not None:
        return None if unused else "open_by_writer"
    if not busy.complete:
        return "open_unknown"
    return "open_by_writer" if (st.st_dev, st.st_ino) in busy.inodes else None


def _rotate_at(dir_fd: int, name: str, keep: int, compress: bool) -> None:
    for number, older in reversed(rotated_at(dir_fd, name)):
        if number >= keep:
            os.unlink(older, dir_fd=dir_fd)
        else:
            renamed = f"{name}.{number + 1}{'.gz' if older.endswith('.gz') else ''}"
            os.rename(older, renamed, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if not keep:
        os.unlink(name, dir_fd=dir_fd)
        return
    os.rename(name, f"{name}.1", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if compress:
        _gzip_at(dir_fd, f"{name}.1")


def _gzip_at(dir_fd: int, name: str) -> None:
    """name -> name.gz in the directory dir_fd, written aside and renamed (like logwriter.gzip_file)."""
    def opener(path, flags):
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)

    tmp = f"{name}.gz.tmp"
    with open(name, "rb", opener=opener) as src, open(tmp, "wb", opener=opener) as raw, \
            gzip.GzipFile(filename=name, mode="wb", fileobj=raw, compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    os.rename(tmp, f"{name}.gz", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    os.unlink(name, dir_fd=dir_fd)
