"""Check the watched filesystems and turn readings into incidents.

check_all() is the full check: what the beat task runs every 10 s on each host (for that host's
filesystems), `manage.py check_disk` and the tests. It reads the rows and incidents afresh, stores a
history sample, rewrites the admission flag and leaves the heartbeat the dead man's switch watches.

Between those, the host's alerts worker checks every DISK_CHECK_SECONDS (0.5 s by default) from a thread
(monitoring/disk_watch.py) through a Watcher, which keeps what the database holds for this host's
filesystems (the rows, their incidents' levels, the open "check stalled" incidents) between its runs:
a run whose statvfs says what is known already touches no database and publishes nothing. It writes,
and publishes, only when a level changes, a "for" duration starts or ends, the usage moved
SAMPLE_STEP_POINTS from the stored reading, or an error appears or clears. It reads the rows and
incidents again every RELOAD_SECONDS (an incident resolved by hand while the disk is still full opens
again, as with the full check), and within CONFIG_CHECK_SECONDS after a watched filesystem is saved
(the save bumps a token in Redis: forget_config). Both may run at once: drive() claims each transition once.

simulate() sends a made-up reading through the same evaluation for `manage.py test_alert`.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from alerts import admission
from alerts.incidents import Transition, drive
from alerts.levels import Level, rank
from alerts.models import Incident
from glmadmin import live
from glmadmin.lib import deadline, disk, mounts
from glmadmin.lib import redis as rd

from . import disk_pending
from .cleanup import trigger as cleanup_trigger
from .models import DiskSample, WatchedFilesystem

log = logging.getLogger(__name__)

TEST_SOURCE = "disk:test"
DEFAULT_THRESHOLDS = {Level.YELLOW: 85.0, Level.ORANGE: 92.0, Level.RED: 97.0}
# statvfs answers in microseconds; one that takes seconds is on a hung mount (stale NFS, dead FUSE server).
STATVFS_SECONDS = 5.0
STALL_PREFIX = "check:disk:"
# A Watcher reads the rows and incidents again this often: what others changed (a hand resolve) is seen then.
RELOAD_SECONDS = 10
# ... and looks at the configuration token this often: a Redis round trip costs more than the rest of a quick
# run, so not every run pays it; a threshold saved in the admin applies within this time.
CONFIG_CHECK_SECONDS = 2
# A Watcher stores (and publishes) a reading that moved this many points from the stored one: the pages'
# percentage follows a filling disk without a write per check. The full check stores one every time.
SAMPLE_STEP_POINTS = 0.5


@dataclass(frozen=True)
class Reading:
    filesystem: WatchedFilesystem
    percent: float | None
    level: str | None
    transition: Transition | None
    error: str = ""
    stalled: bool = False  # statvfs did not return in time: level and percent are unknown
    pending: disk_pending.Pending | None = None  # a level reached but not held for its duration yet
    stored: bool = False  # this reading was written to the database (a sample, the row's last reading)


@dataclass
class View:
    """What the database holds for one host's filesystems, as of `loaded_at` and kept up to date by this
    process's own writes."""

    token: str | None
    loaded_at: datetime
    filesystems: list[WatchedFilesystem]
    levels: dict[str, str] = field(default_factory=dict)  # open incident's level per source (disk:<path>)
    stalled: set[str] = field(default_factory=set)  # sources of the open "check stalled" incidents
    pending: dict[int, str | None] = field(default_factory=dict)  # the level pending per filesystem, if any
    full: bool = True  # the full check: a sample stored, admission rewritten, stalls of unwatched paths resolved

    @classmethod
    def load(cls, filesystems: list[WatchedFilesystem], stalled: set[str], now: datetime,
             token: str | None = None, full: bool = True) -> "View":
        levels = dict(Incident.objects.open().filter(source__in=[fs.source for fs in filesystems])
                      .values_list("source", "level"))
        return cls(token, now, filesystems, levels, stalled, full=full)


def check_filesystem(fs: WatchedFilesystem, now: datetime | None = None) -> Reading:
    now = now or timezone.now()
    stalled = set(_open_stalls().filter(source=stall_source(fs)).values_list("source", flat=True))
    return _check(fs, _start(fs), now, View.load([fs], stalled, now))


def check_all(now: datetime | None = None) -> list[Reading]:
    """Check this host's enabled filesystems, everything read afresh: statvfs sees only the mounts of the
    machine it runs on."""
    now = now or timezone.now()
    return _run(_load_view(settings.GLMADMIN_HOST_NAME, now), now)


class Watcher:
    """Checks this host's filesystems again and again in one process, keeping what it knows between runs."""

    def __init__(self):
        self.view: View | None = None
        self.token_read_at: datetime | None = None

    def run(self, now: datetime | None = None) -> list[Reading]:
        now = now or timezone.now()
        view = self.view
        stale = (view is None or not view.loaded_at <= now
                 or (now - view.loaded_at).total_seconds() >= RELOAD_SECONDS)
        if not stale and not (self.token_read_at is not None and self.token_read_at <= now
                              and (now - self.token_read_at).total_seconds() < CONFIG_CHECK_SECONDS):
            self.token_read_at = now
            stale = config_token() != view.token
        if stale:
            token, self.token_read_at = config_token(), now
            pending = view.pending if view is not None else {}
            view = self.view = _load_view(settings.GLMADMIN_HOST_NAME, now, token, full=False)
            view.pending.update(pending)  # what the pages were last told is waiting
        return _run(view, now)


def _load_view(host: str, now: datetime, token: str | None = None, full: bool = True) -> View:
    filesystems = list(WatchedFilesystem.objects.filter(enabled=True, host=host))
    stalled = set(_open_stalls().filter(host=host).values_list("source", flat=True))
    return View.load(filesystems, stalled, now, token, full)


def _run(view: View, now: datetime) -> list[Reading]:
    # Every statvfs starts at once, so their deadlines run together: hung mounts cost one deadline in all.
    calls = {fs.pk: _start(fs) for fs in view.filesystems}
    pending_before = dict(view.pending)
    readings = [_check(fs, calls[fs.pk], now, view) for fs in view.filesystems]
    changed = any(r.transition for r in readings)
    if view.full:
        # This host's stalls only: others check theirs.
        changed |= _resolve_unwatched_stalls(view.stalled, view.filesystems)
        _after_check(changed)
    elif changed:
        _after_check(True)
    elif any(r.stored for r in readings) or any(view.pending[pk] != pending_before.get(pk) for pk in view.pending):
        live.publish()  # a new percentage or a level starting to wait: sent when the pages' state changed
    return readings


def config_token() -> str | None:
    """The token of the watched filesystems' configuration (None while Redis cannot be read: a Watcher then
    reads the rows again every RELOAD_SECONDS, as it does anyway)."""
    client = rd.client()
    try:
        token = client.get(_token_key())
        if token is None:  # Redis emptied or restarted: a new token, so every process reads the rows again
            client.set(_token_key(), uuid.uuid4().hex, nx=True)
            token = client.get(_token_key())
    except redis.RedisError as exc:
        log.warning("disk checks: the configuration token cannot be read (%s)", exc)
        return None
    return token


def forget_config(**kwargs) -> None:
    """A watched filesystem changed: every Watcher reads the rows again at its next run (after the commit)."""
    def bump():
        rd.client().set(_token_key(), uuid.uuid4().hex)

    transaction.on_commit(bump, robust=True)


def _token_key() -> str:
    return rd.key("disk", "config")


def stall_source(fs: WatchedFilesystem) -> str:
    return f"{STALL_PREFIX}{fs.path}"


def _start(fs: WatchedFilesystem) -> deadline.Call | deadline.Stalled:
    try:
        return deadline.start(f"statvfs:{fs.path}", _read, fs.path)
    except deadline.Stalled as exc:  # refused: too many earlier calls still hang
        return deadline.Stalled(_what(fs), STATVFS_SECONDS, exc.since, refused=True)


def _read(path: str) -> tuple[disk.Usage, bool]:
    """The usage of path's filesystem, and whether path is a mount point (a statx: microseconds)."""
    return disk.usage(path), mounts.is_mount_point(path)


def _what(fs: WatchedFilesystem) -> str:
    return f"statvfs on {fs.path}"


def _check(fs: WatchedFilesystem, call: deadline.Call | deadline.Stalled, now: datetime, view: View) -> Reading:
    try:
        if isinstance(call, deadline.Stalled):
            raise call
        usage, mounted = call.wait(STATVFS_SECONDS, _what(fs))
    except deadline.Stalled as exc:
        return _stalled(fs, exc, view)
    except OSError as exc:
        _returned(fs, view)
        return _unreadable(fs, f"cannot read {fs.path}: {exc.strerror or exc}", now, view)
    _returned(fs, view)
    if fs.mount_point is None:  # the first check of this path: what it is now is what it should stay
        WatchedFilesystem.objects.filter(pk=fs.pk).update(mount_point=mounted)
        fs.mount_point = mounted
    elif fs.mount_point and not mounted:
        # Unmounted: the directory left behind reads as the filesystem underneath, which is not this disk.
        return _unreadable(fs, f"{fs.path} is not a mount point any more (unmounted?)", now, view)
    current = view.levels.get(fs.source)
    if view.full or view.pending.get(fs.pk) or rank(fs.level_for(usage.percent, current)) > rank(current):
        decision = disk_pending.decide(fs, usage.percent, current, now)
    else:  # same level or lower, nothing waiting: decide() would say so without its Redis round trip
        decision = disk_pending.Decision(fs.level_for(usage.percent, current), None)
    view.pending[fs.pk] = decision.pending.level if decision.pending else None
    moves = decision.level != current
    # The reading is written before the incident moves, so whoever sees the incident sees its reading too.
    stored = (view.full or moves or bool(fs.last_error) or fs.last_percent is None
              or abs(usage.percent - fs.last_percent) >= SAMPLE_STEP_POINTS)
    if stored:
        DiskSample.objects.create(filesystem=fs, at=now, percent=usage.percent, used_bytes=usage.used_bytes,
                                  total_bytes=usage.total_bytes)
        WatchedFilesystem.objects.filter(pk=fs.pk).update(last_percent=usage.percent, last_checked_at=now,
                                                          last_error="")
        fs.last_percent, fs.last_checked_at, fs.last_error = usage.percent, now, ""
    transition = None
    if moves:
        message = _message(decision.level, usage.percent, fs.path, fs.thresholds().get(decision.level))
        if decision.held_seconds:
            message += f" for {decision.held_seconds:.0f} s"
        transition = drive(fs.source, decision.level, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                           value=usage.percent, message=message, host=fs.host)
        _known_level(view, fs.source, decision.level)
        cleanup_trigger.on_disk_transition(transition)  # orange or worse: try to make room
    return Reading(fs, usage.percent, decision.level, transition, pending=decision.pending, stored=stored)


def _known_level(view: View, source: str, level: str | None) -> None:
    if level is None:
        view.levels.pop(source, None)
    else:
        view.levels[source] = level


def _stalled(fs: WatchedFilesystem, exc: deadline.Stalled, view: View) -> Reading:
    """statvfs hangs: the check itself is the incident. The disk's own incident keeps its last level (its
    usage is unknown, not better), and the other filesystems are checked as usual."""
    error = str(exc)
    if fs.last_error != error:  # the database is written when the state changes, not on every check
        WatchedFilesystem.objects.filter(pk=fs.pk).update(last_error=error)
        fs.last_error = error
        log.warning("disk %s: %s", fs.label, error)
    elif stall_source(fs) in view.stalled:
        return Reading(fs, None, None, None, error, stalled=True)  # known: its incident is open already
    transition = drive(stall_source(fs), Level.ORANGE, kind=Incident.Kind.CHECK,
                       title=f"Check stalled: disk {fs.label} ({fs.path})", value=None,
                       message=f"{error}: its usage is unknown until it does (is the mount hung?)", host=fs.host)
    view.stalled.add(stall_source(fs))
    return Reading(fs, None, None, transition, error, stalled=True)


def _returned(fs: WatchedFilesystem, view: View) -> None:
    if stall_source(fs) in view.stalled:
        drive(stall_source(fs), None, kind=Incident.Kind.CHECK, title="", value=None,
              message=f"{_what(fs)} returns again")
        view.stalled.discard(stall_source(fs))


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


def _unreadable(fs: WatchedFilesystem, error: str, now, view: View) -> Reading:
    """A path that cannot be read (removed, unmounted, permissions) is an incident: its disk is unwatched.

    Orange on the filesystem's own incident: it needs someone, but says nothing about the disk being full,
    so it neither pauses requests (red) nor starts a cleanup. The next good reading carries the incident on
    from the real usage (resolved, or the level the usage calls for).
    """
    if not view.full and fs.last_error == error and view.levels.get(fs.source) == Level.ORANGE:
        return Reading(fs, None, Level.ORANGE, None, error)  # known, and said already
    log.warning(error)
    WatchedFilesystem.objects.filter(pk=fs.pk).update(last_error=error, last_checked_at=now)
    fs.last_error = error
    transition = drive(fs.source, Level.ORANGE, kind=Incident.Kind.DISK, title=f"Disk {fs.label} ({fs.path})",
                       value=None, message=f"{error}: its usage is unknown, nothing on it is being watched",
                       host=fs.host)
    _known_level(view, fs.source, Level.ORANGE)
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
    # (A red one pauses new requests: the banner, the overview and the notifications say so, not each message.)
    if level:
        return f"disk at {percent:.1f} %{crossed} on {path}"
    return f"disk back to {percent:.1f} % on {path}"


def prune_samples() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.DISK_SAMPLE_RETENTION_HOURS)
    deleted, _ = DiskSample.objects.filter(at__lt=cutoff).delete()
    return deleted
