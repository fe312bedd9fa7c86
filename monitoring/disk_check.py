"""Check the watched filesystems and turn readings into incidents.

check_all() is what the beat task (on each host, for that host's filesystems),
`manage.py check_disk` and the tests run;
simulate() sends a made-up reading through the same evaluation for
`manage.py test_alert`.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from alerts import admission
from alerts.incidents import Transition, drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin import live
from glmadmin.lib import deadline, disk

from . import disk_pending
from .cleanup import trigger as cleanup_trigger
from .models import DiskSample, WatchedFilesystem

log = logging.getLogger(__name__)

TEST_SOURCE = "disk:test"
DEFAULT_THRESHOLDS = {Level.YELLOW: 85.0, Level.ORANGE: 92.0, Level.RED: 97.0}
# statvfs answers in microseconds; one that takes seconds is on a hung mount (stale NFS, dead FUSE server).
STATVFS_SECONDS = 5.0
STALL_PREFIX = "check:disk:"


@dataclass(frozen=True)
class Reading:
    filesystem: WatchedFilesystem
    percent: float | None
    level: str | None
    transition: Transition | None
    error: str = ""
    stalled: bool = False  # statvfs did not return in time: level and percent are unknown
    pending: disk_pending.Pending | None = None  # a level reached but not held for its duration yet


def check_filesystem(fs: WatchedFilesystem, now: datetime | None = None) -> Reading:
    stalled = set(_open_stalls().filter(source=stall_source(fs)).values_list("source", flat=True))
    return _check(fs, _start(fs), now or timezone.now(), stalled)


def check_all(now: datetime | None = None) -> list[Reading]:
    """Check this host's enabled filesystems: statvfs sees only the mounts of the machine it runs on."""
    now = now or timezone.now()
    host = settings.GLMADMIN_HOST_NAME
    filesystems = list(WatchedFilesystem.objects.filter(enabled=True, host=host))
    # Every statvfs starts at once, so their deadlines run together: hung mounts cost one deadline in all.
    calls = {fs.pk: _start(fs) for fs in filesystems}
    stalled = set(_open_stalls().filter(host=host).values_list("source", flat=True))
    readings = [_check(fs, calls[fs.pk], now, stalled) for fs in filesystems]
    unwatched = _resolve_unwatched_stalls(stalled, filesystems)  # this host's stalls only: others check theirs
    _after_check(any(r.transition for r in readings) or unwatched)
    return readings


def stall_source(fs: WatchedFilesystem) -> str:
    return f"{STALL_PREFIX}{fs.path}"


def _start(fs: WatchedFilesystem) -> deadline.Call | deadline.Stalled:
    try:
        return deadline.start(f"statvfs:{fs.path}", disk.usage, fs.path)
    except deadline.Stalled as exc:  # refused: too many earlier calls still hang
        return deadline.Stalled(_what(fs), STATVFS_SECONDS, exc.since, refused=True)


def _what(fs: WatchedFilesystem) -> str:
    return f"statvfs on {fs.path}"


def _check(fs: WatchedFilesystem, call: deadline.Call | deadline.Stalled, now: datetime,
           stalled: set[str]) -> Reading:
    try:
        if isinstance(call, deadline.Stalled):
            raise call
        usage = call.wait(STATVFS_SECONDS, _what(fs))
    except deadline.Stalled as exc:
        return _stalled(fs, exc)
    except OSError as exc:
        _returned(fs, stalled)
        return _unreadable(fs, f"cannot read {fs.path}: {exc.strerror or exc}", now)
    _returned(fs, stalled)
    DiskSample.objects.create(filesystem=fs, at=now, percent=usage.percent, used_bytes=usage.used_bytes,
                              total_bytes=usage.total_bytes)
    WatchedFilesystem.objects.filter(pk=fs.pk).update(last_percent=usage.percent, last_checked_at=now, last_error="")
    fs.last_percent = usage.percent
    open_incident = Incident.objects.open().filter(source=fs.source).first()
    decision = disk_pending.decide(fs, usage.percent, open_incident.level if open_incident else None, now)
    message = _message(decision.level, usage.percent, fs.path, fs.thresholds().get(decision.level))
    if decision.held_seconds:
        message += f" for {decision.held_seconds:.0f} s"
    transition = drive(fs.source, decision.level, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                       value=usage.percent, message=message, host=fs.host)
    cleanup_trigger.on_disk_transition(transition)  # orange or worse: try to make room
    return Reading(fs, usage.percent, decision.level, transition, pending=decision.pending)


def _stalled(fs: WatchedFilesystem, exc: deadline.Stalled) -> Reading:
    """statvfs hangs: the check itself is the incident. The disk's own incident keeps its last level (its
    usage is unknown, not better), and the other filesystems are checked as usual."""
    error = str(exc)
    if fs.last_error != error:  # the database is written when the state changes, not on every check
        WatchedFilesystem.objects.filter(pk=fs.pk).update(last_error=error)
        fs.last_error = error
        log.warning("disk %s: %s", fs.label, error)
    transition = drive(stall_source(fs), Level.ORANGE, kind=Incident.Kind.CHECK,
                       title=f"Check stalled: disk {fs.label} ({fs.path})", value=None,
                       message=f"{error}: its usage is unknown until it does (is the mount hung?)", host=fs.host)
    return Reading(fs, None, None, transition, error, stalled=True)


def _returned(fs: WatchedFilesystem, stalled: set[str]) -> None:
    if stall_source(fs) in stalled:
        drive(stall_source(fs), None, kind=Incident.Kind.CHECK, title="", value=None,
              message=f"{_what(fs)} returns again")


def _open_stalls():
    return Incident.objects.open().filter(kind=Incident.Kind.CHECK, source__startswith=STALL_PREFIX)


def _resolve_unwatched_stalls(stalled: set[str], filesystems: list[WatchedFilesystem]) -> bool:
    """A stalled check of a filesystem that is no longer watched (disabled, removed, re-pathed) is over."""
    watched = {stall_source(fs) for fs in filesystems}
    changed = False
    for source in stalled - watched:
        path = source.removeprefix(STALL_PREFIX)
        changed |= drive(source, None, kind=Incident.Kind.CHECK, title="", value=None,
                         message=f"{path} is no longer watched") is not None
    return changed


def _unreadable(fs: WatchedFilesystem, error: str, now) -> Reading:
    """A path that cannot be read (unmounted, removed, permissions) is an incident: its disk is unwatched.

    Orange on the filesystem's own incident: it needs someone, but says nothing about the disk being full,
    so it neither pauses requests (red) nor starts a cleanup. The next good reading carries the incident on
    from the real usage (resolved, or the level the usage calls for).
    """
    log.warning(error)
    WatchedFilesystem.objects.filter(pk=fs.pk).update(last_error=error, last_checked_at=now)
    transition = drive(fs.source, Level.ORANGE, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                       value=None, message=f"{error}: its usage is unknown, nothing on it is being watched",
                       host=fs.host)
    return Reading(fs, None, Level.ORANGE, transition, error)


def simulate(level: str | None) -> Transition | None:
    """Fire (or clear, with None) a test alert as if a disk had reached `level`."""
    percent = DEFAULT_THRESHOLDS[level] if level else 0.0
    transition = drive(TEST_SOURCE, level, kind=Incident.Kind.DISK, title="Simulated disk alert",
                       value=percent, message=_message(level, percent, "test volume") + " (simulated)",
                       is_test=True)
    _after_check(transition is not None)
    return transition


def _after_check(changed: bool) -> None:
    admission.sync()
    live.publish(force=changed)


def _message(level: str | None, percent: float, path: str, threshold: float | None = None) -> str:
    # The threshold crossed, so a reader of the alert knows which setting (and what value of it) fired.
    crossed = f" ({level} threshold: {threshold:g} %)" if level and threshold is not None else ""
    if level == Level.RED:
        return f"new requests are paused: disk at {percent:.1f} %{crossed} on {path}"
    if level:
        return f"disk at {percent:.1f} %{crossed} on {path}"
    return f"disk back to {percent:.1f} % on {path}"


def prune_samples() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.DISK_SAMPLE_RETENTION_HOURS)
    deleted, _ = DiskSample.objects.filter(at__lt=cutoff).delete()
    return deleted
