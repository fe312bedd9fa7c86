"""The dead man's switch: monitoring that stops is itself an alert, raised without the stopped part.

Disk checks run in the alerts worker, sent by beat; when either dies or hangs, nothing is checked and
nothing is said. So each completed check run leaves a heartbeat in Redis (record_check, from the task),
and every web process watches it from a thread of its own (Ticker, started by the ASGI lifespan in
glmadmin/asgi.py). When no check has completed for MONITORING_STALLED_AFTER_CHECKS check intervals
(and at least MONITORING_STALLED_MIN_SECONDS):

- every page shows "monitoring stalled since <the last completed check>". The live part computes it
  from the heartbeat, so a page's first render has it as well as every open page; the ticker publishes
  when it changes.
- an orange incident opens (not red: red pauses inference, and the engines are not what stopped). Its
  notification is delivered by the web process itself, through alerts' own delivery code: the notify
  worker may be the stalled part too. Only the process whose drive() opened the incident sends (the
  database's one-open-incident-per-source is the claim), so several web processes or hosts send once.
  The planner also queues the usual delivery task; whichever of the two claims the row first sends it,
  and a send this process could not finish is retried by it, or by the sweep once beat is back.
- checks complete again: the banner clears and the incident resolves, told the same way.

Each host checks its own disks (its alerts worker, its schedule "Check disk usage on <host>"), and each
leaves its own mark too: the switch watches the stalest of the hosts with an enabled check schedule, so a
host whose checks stopped is not hidden by another's going on, and the banner and incident name it.

The interval is the check's beat schedule (editable in the admin), or what a check run not sent by beat
says with its heartbeat; a disabled schedule is a stop on purpose and raises nothing. The switch arms
with the first completed check: with no heartbeat at all (Redis emptied, a fresh install before its
first check) there is nothing to compare with. Times are Redis's clock, so hosts whose clocks differ
agree.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from alerts.incidents import Transition, drive
from alerts.levels import Level
from alerts.models import Incident, Notification
from alerts.notifications import delivery
from glmadmin import live
from glmadmin.lib import redis as rd

log = logging.getLogger(__name__)

CHECK_TASK = "monitoring.tasks.check_disks"
SOURCE = "monitoring:checks"
TITLE = "Monitoring stalled"
# The check interval is read from the database at most this often per process (admin edits apply then).
INTERVAL_TTL_SECONDS = 60
# Calls to delivery for one notification, after which it is left to the sweep: more than its own retries.
MAX_TRIES = 2 * delivery.MAX_ATTEMPTS
# A page draws this while Redis cannot be read (the status bar then names the part as not readable).
FALLBACK = {"monitoring": {"stalled_since": None}}


def heartbeat_key() -> str:
    return rd.key("monitoring", "last_check")  # a hash: at (Redis clock, epoch seconds), host


def hosts_key() -> str:
    return rd.key("monitoring", "last_check_by_host")  # a hash: host -> at (Redis clock, epoch seconds)


def record_check(every: float | None = None) -> None:
    """A check run completed: the heartbeat the switch watches.

    `every`: the seconds until the next run is due, for checks not run by the beat schedule (which is
    otherwise read for it).
    """
    client = rd.client()
    seconds, micros = client.time()
    beat = {"at": seconds + micros / 1e6, "host": settings.GLMADMIN_HOST_NAME}
    pipe = client.pipeline()
    pipe.hset(heartbeat_key(), mapping=beat if every is None else {**beat, "every": every})
    pipe.hset(hosts_key(), beat["host"], beat["at"])
    if every is None:
        pipe.hdel(heartbeat_key(), "every")
    pipe.execute()


QUICK_MARK_SECONDS = 2  # how often the quick checks mark that they run


def quick_checks_key(host: str) -> str:
    return rd.key("monitoring", "quick_checks", host)


def record_quick_checks(every: float) -> None:
    """This host's quick disk checks ran (monitoring/disk_watch.py, marked every few seconds). While they run,
    disk alerts are still raised with beat or the full checks stopped, and the stalled banner says so rather
    than that no disk alert can be raised. The mark expires by itself when they stop."""
    fresh = max(5, 3 * max(QUICK_MARK_SECONDS, every))
    rd.client().set(quick_checks_key(settings.GLMADMIN_HOST_NAME), 1, ex=round(fresh))


def quick_checks_run(host: str) -> bool:
    return bool(rd.client().exists(quick_checks_key(host)))


@dataclass(frozen=True)
class Watch:
    """What the heartbeat says at one moment."""

    now: float  # Redis clock
    last_check: float | None  # when a check last completed, None before the first one
    host: str  # where it ran
    interval: float | None  # seconds between checks by the schedule, None when none is scheduled

    @property
    def stalled_after(self) -> float | None:
        checks = settings.MONITORING_STALLED_AFTER_CHECKS
        if not (checks and self.interval):
            return None
        # Never a few seconds, however fast the checks: a busy database alone can hold one that long.
        return max(checks * self.interval, settings.MONITORING_STALLED_MIN_SECONDS)

    @property
    def armed(self) -> bool:
        return self.last_check is not None and self.stalled_after is not None

    @property
    def stalled(self) -> bool:
        return self.armed and self.now - self.last_check > self.stalled_after

    @property
    def since(self) -> datetime | None:
        return datetime.fromtimestamp(self.last_check, UTC) if self.last_check is not None else None


def watch() -> Watch:
    pipe = rd.client().pipeline(transaction=False)
    pipe.hgetall(heartbeat_key())
    pipe.hgetall(hosts_key())
    pipe.time()
    beat, by_host, (seconds, micros) = pipe.execute()
    last = float(beat["at"]) if beat.get("at") else None
    host = beat.get("host", "")
    if last is not None:
        # Each host checks its own disks (in its own alerts worker): one host's checks going on must not hide
        # another's stopping, so the switch watches the stalest of the hosts scheduled to check.
        scheduled = {name: float(at) for name, at in by_host.items() if name in checking_hosts()}
        if scheduled:
            host, last = min(scheduled.items(), key=lambda item: item[1])
    interval = float(beat["every"]) if beat.get("every") else check_interval() if last is not None else None
    return Watch(now=seconds + micros / 1e6, last_check=last, host=host, interval=interval)


_interval = {"value": None, "hosts": frozenset(), "read_at": None}


def check_interval() -> float | None:
    """The shortest interval of the enabled disk-check schedules (None: not scheduled), cached briefly."""
    return _schedules()["value"]


def checking_hosts() -> frozenset[str]:
    """The hosts with an enabled disk-check schedule of their own (a host retired by deleting or switching
    off its schedule is not waited for)."""
    return _schedules()["hosts"]


def _schedules() -> dict:
    read_at = _interval["read_at"]
    if read_at is not None and time.monotonic() - read_at < INTERVAL_TTL_SECONDS:
        return _interval
    from django_celery_beat.models import PeriodicTask

    rows = list(PeriodicTask.objects.filter(task=CHECK_TASK, enabled=True, interval__isnull=False).select_related(
        "interval"))
    value = min((row.interval.schedule.run_every.total_seconds() for row in rows), default=None)
    hosts = frozenset(filter(None, (_kwargs(row).get("host") for row in rows)))
    _interval.update(value=value, hosts=hosts, read_at=time.monotonic())
    return _interval


def _kwargs(row) -> dict:
    try:
        kwargs = json.loads(row.kwargs or "{}")
    except ValueError:
        return {}
    return kwargs if isinstance(kwargs, dict) else {}


def forget_interval() -> None:
    """Read the schedule again at the next check (tests that change it)."""
    _interval.update(value=None, hosts=frozenset(), read_at=None)


# --- the page: a banner on every page while stalled ---------------------------------------------

def part() -> dict:
    """This switch's part of the live state (glmadmin/live.py)."""
    seen = watch()
    if not seen.stalled:
        return FALLBACK
    # The incident's own banner would say the same again: the page draws this one in its place.
    incident = Incident.objects.open().filter(source=SOURCE).values_list("pk", flat=True).first()
    return {"monitoring": {
        "stalled_since": seen.since.isoformat(), "since_text": _time(seen.since), "host": seen.host,
        "checks_every": seen.interval, "stalled_after": seen.stalled_after, "incident": incident,
        "quick_checks": quick_checks_run(seen.host),
    }}


def _time(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- the incident and its notification, from the web process --------------------------------------

def judge(seen: Watch) -> Transition | None:
    """Open or resolve the incident for what the heartbeat says; the transition this call made, if any."""
    if seen.stalled:
        age = seen.now - seen.last_check
        message = (f"no disk check has completed since {_time(seen.since)} (on host {seen.host}), {age:.0f} s "
                   f"ago; one is due every {seen.interval:g} s. ")
        if quick_checks_run(seen.host):
            message += ("Beat (or the worker running its tasks) is down or hung: the alerts worker's quick checks "
                        "still raise disk alerts, but cleanup, disk history and engine supervision wait")
        else:
            message += ("The alerts worker or beat is down or hung, so no disk alert can be raised until checks "
                        "run again")
        return drive(SOURCE, Level.ORANGE, kind=Incident.Kind.MONITORING, title=TITLE, value=round(age),
                     message=message[:500], host=seen.host or None)
    if seen.last_check is None:
        return None  # nothing to judge by (Redis emptied): an open incident waits for the next check
    why = "disk checks complete again" if seen.armed else "no disk check is scheduled any more"
    return drive(SOURCE, None, kind=Incident.Kind.MONITORING, title=TITLE, value=None, message=why)


def notifications_of(transition: Transition) -> list[int]:
    """The notifications planned for a transition (none when a silence covers it)."""
    event = transition.incident.events.filter(kind=transition.kind).order_by("-pk").first()
    return list(Notification.objects.filter(event=event).order_by("pk").values_list("pk", flat=True))


class Ticker:
    """Watches the heartbeat from a thread of a web process, until stopped.

    One per process; each tick is a Redis round trip, plus the database when something changes (and a
    look at the open incident while stalled, so one that could not be opened is opened later).
    """

    DEFAULT_PERIOD = 5.0

    def __init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stalled: bool | None = None  # what this process last made of the heartbeat; None: unknown
        self._retries: dict[int, float] = {}  # notification -> when to try it again (monotonic)
        self._tries: dict[int, int] = {}
        self._last_error = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="monitoring-deadman", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.tick())

    def tick(self) -> float:
        """Look once; the seconds until the next look."""
        close_old_connections()
        try:
            seen = watch()
            if seen.stalled or seen.stalled != self._stalled:
                self._act(seen)
            self._retry_due()
            self._last_error = ""
            return self.period(seen)
        except Exception as exc:  # noqa: BLE001 - Redis or the database down: keep watching, say it once
            if str(exc) != self._last_error:
                log.exception("dead man's switch: cannot check the heartbeat")
            self._last_error = str(exc)
            self._stalled = None
            return self.DEFAULT_PERIOD
        finally:
            close_old_connections()

    def period(self, seen: Watch) -> float:
        # A look per check interval (at most 5 s apart), so a stall shows soon after its threshold.
        return min(max(seen.interval or self.DEFAULT_PERIOD, 0.5), self.DEFAULT_PERIOD)

    def _act(self, seen: Watch) -> None:
        transition = judge(seen)
        changed = seen.stalled != self._stalled or transition is not None
        self._stalled = seen.stalled
        if changed:
            try:
                live.publish()  # only sent when the pages' state changed (another process may have sent it)
            except Exception:  # noqa: BLE001 - the pages are told at the next tick; the notification goes now
                log.exception("dead man's switch: cannot publish the live state")
                self._stalled = None
        for pk in notifications_of(transition) if transition else ():
            self._deliver(pk)

    def _retry_due(self) -> None:
        now = time.monotonic()
        for pk in [pk for pk, due in self._retries.items() if due <= now]:
            self._deliver(pk)

    def _deliver(self, pk: int) -> None:
        outcome = delivery.deliver(pk)
        log.info("dead man's switch: notification %s %s", pk, outcome)
        wait = outcome.retry_in
        if wait is None:  # sent, given up, or not due yet (held to be sent with others): look when it is due
            due = Notification.objects.filter(pk=pk, status=Notification.Status.PENDING).values_list(
                "next_attempt_at", flat=True).first()
            wait = None if due is None else max((due - timezone.now()).total_seconds(), 0.0)
        tries = self._tries.get(pk, 0) + 1
        if wait is None or tries > MAX_TRIES:
            self._retries.pop(pk, None)
            self._tries.pop(pk, None)
        else:
            self._retries[pk] = time.monotonic() + wait
            self._tries[pk] = tries
