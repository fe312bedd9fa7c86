"""Check the watched filesystems and turn readings into incidents.

check_all() is what the beat task, `manage.py check_disk` and the tests run;
simulate() sends a made-up reading through the same evaluation for
`manage.py test_alert`.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from alerts import admission
from alerts.incidents import Transition, drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin import live
from glmadmin.lib import disk

from .cleanup import trigger as cleanup_trigger
from .models import DiskSample, WatchedFilesystem

log = logging.getLogger(__name__)

TEST_SOURCE = "disk:test"
DEFAULT_THRESHOLDS = {Level.YELLOW: 85.0, Level.ORANGE: 92.0, Level.RED: 97.0}


@dataclass(frozen=True)
class Reading:
    filesystem: WatchedFilesystem
    percent: float | None
    level: str | None
    transition: Transition | None
    error: str = ""


def check_filesystem(fs: WatchedFilesystem) -> Reading:
    now = timezone.now()
    try:
        usage = disk.usage(fs.path)
    except OSError as exc:
        return _unreadable(fs, f"cannot read {fs.path}: {exc.strerror or exc}", now)
    DiskSample.objects.create(filesystem=fs, at=now, percent=usage.percent, used_bytes=usage.used_bytes,
                              total_bytes=usage.total_bytes)
    WatchedFilesystem.objects.filter(pk=fs.pk).update(last_percent=usage.percent, last_checked_at=now, last_error="")
    fs.last_percent = usage.percent
    open_incident = Incident.objects.open().filter(source=fs.source).first()
    level = fs.level_for(usage.percent, open_incident.level if open_incident else None)
    transition = drive(fs.source, level, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                       value=usage.percent, message=_message(level, usage.percent, fs.path))
    cleanup_trigger.on_disk_transition(transition)  # orange or worse: try to make room
    return Reading(fs, usage.percent, level, transition)


def _unreadable(fs: WatchedFilesystem, error: str, now) -> Reading:
    """A path that cannot be read (unmounted, removed, permissions) is an incident: its disk is unwatched.

    Orange on the filesystem's own incident: it needs someone, but says nothing about the disk being full,
    so it neither pauses requests (red) nor starts a cleanup. The next good reading carries the incident on
    from the real usage (resolved, or the level the usage calls for).
    """
    log.warning(error)
    WatchedFilesystem.objects.filter(pk=fs.pk).update(last_error=error, last_checked_at=now)
    transition = drive(fs.source, Level.ORANGE, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                       value=None, message=f"{error}: its usage is unknown, nothing on it is being watched")
    return Reading(fs, None, Level.ORANGE, transition, error)


def check_all() -> list[Reading]:
    readings = [check_filesystem(fs) for fs in WatchedFilesystem.objects.filter(enabled=True)]
    _after_check(any(r.transition for r in readings))
    return readings


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


def _message(level: str | None, percent: float, path: str) -> str:
    if level == Level.RED:
        return f"new requests are paused: disk at {percent:.1f} % on {path}"
    if level:
        return f"disk at {percent:.1f} % on {path}"
    return f"disk back to {percent:.1f} % on {path}"


def prune_samples() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.DISK_SAMPLE_RETENTION_HOURS)
    deleted, _ = DiskSample.objects.filter(at__lt=cutoff).delete()
    return deleted
