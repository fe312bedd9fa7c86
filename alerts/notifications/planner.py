"""Who is told what: incident events and time turn into Notification rows.

The rules (see the README's notifications section):

- A channel hears an incident's opening, and each escalation, into a level it
  receives (its levels and incident kinds).
- Once a channel has been told about an incident, it hears every later
  transition of it: de-escalations and the resolve. So its picture is never
  stale (a red-only channel learns that requests are accepted again), and a
  channel that was never told is not bothered by the resolve.
- A red, unacknowledged incident is repeated to the channels that receive red
  every channel.repeat_minutes, counted from when it turned red.
- An escalation channel (escalate_after_minutes N > 0) hears nothing at first:
  a red incident nobody acknowledged within N minutes of turning red is sent
  to it once (then, being told, it hears the incident's later changes), so
  steps at 15 and 60 minutes reach the on-call robot, then a manager. Reminder
  number n has a fixed key, so a beat that runs twice, or late, plans it once;
  after an outage only the latest reminder is sent, not the backlog.
- Acknowledgements are not sent; they stop the reminders, and later messages
  say who acknowledged.
- A transition covered by an active silence (alerts/silences.py) is recorded
  as silenced and sent to nobody, reminders included. Once no silence covers
  it any more, an incident still open is sent once, as its latest silenced
  transition (release_held, every minute).
- Likewise a transition of an engine or telemetry incident on a host with an
  open red disk incident (alerts/inhibition.py) is recorded as inhibited by
  the disk and sent to nobody; once the disk is no longer red, an incident
  still open is sent once (at once, with the disk's own change, and by the
  same every-minute task).
- A channel with a group wait (grouping.py) gets the changes of one host's
  incidents that come close together as one message; reminders, escalation
  steps and channel tests are always sent alone and at once.

Each row is unique per (channel, dedupe_key), so planning twice is harmless.
There is no storm from a flapping value: one event is at most one message per
channel, and events are already rate-limited by the level hysteresis.
"""

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from glmadmin import jobs

from .. import inhibition, silences
from ..levels import Level
from ..models import Incident, IncidentEvent, Notification, NotificationChannel
from . import grouping, messages

log = logging.getLogger(__name__)
DELIVER_TASK = "alerts.tasks.deliver_notification"
Reason = Notification.Reason
EventKind = IncidentEvent.Kind

REASON_FOR_EVENT = {
    EventKind.OPENED: Reason.OPENED,
    EventKind.ESCALATED: Reason.ESCALATED,
    EventKind.DEESCALATED: Reason.DEESCALATED,
    EventKind.RESOLVED: Reason.RESOLVED,
}


def event_committed(event_id: int) -> list[int]:
    """Plan and queue what an incident event says. Called once its transaction committed."""
    event = IncidentEvent.objects.select_related("incident__acknowledged_by", "user").get(pk=event_id)
    reason = REASON_FOR_EVENT.get(event.kind)
    if reason is None:
        return []
    incident = event.incident
    planned = []
    silence = silences.covering(incident, event.level, at=event.at)
    cause = inhibition.holds(event) if silence is None else None
    if silence is not None:
        IncidentEvent.objects.filter(pk=event.pk).update(silenced_by=silence)
    elif cause is not None:
        IncidentEvent.objects.filter(pk=event.pk).update(inhibited_by=cause)
    else:
        planned = _plan_event(incident, event, reason, messages.for_event(incident, event, reason),
                              f"event:{event.pk}")
    if incident.kind == Incident.Kind.DISK and event.kind in (EventKind.DEESCALATED, EventKind.RESOLVED):
        # A disk that stops being red releases its echoes now, so they join the disk's own message.
        planned += release_held(enqueued=False)
    return enqueue(planned)


HELD = Q(silenced_by__isnull=False) | Q(inhibited_by__isnull=False)


def release_held(enqueued: bool = True) -> list[int]:
    """Tell about incidents kept quiet by silences that have ended, or by red disks that no longer are:
    once each, if still open, as their latest held transition."""
    pending = (IncidentEvent.objects.filter(HELD, released=False)
               .select_related("incident__acknowledged_by", "silenced_by", "inhibited_by").order_by("at", "pk"))
    latest = {event.incident_id: event for event in pending}  # the last held transition of each
    quiet = silences.active() if latest else []
    causes = inhibition.causes() if latest else []
    planned = []
    for event in latest.values():
        incident = event.incident
        if incident.is_open and (silences.covering(incident, among=quiet) is not None
                                 or inhibition.cause_of(incident, among=causes) is not None):
            continue  # still held (perhaps by a newer silence, or another red disk)
        reason = REASON_FOR_EVENT.get(event.kind)
        if incident.is_open and reason is not None:
            message = messages.for_event(incident, event, reason)
            if event.silenced_by_id:
                message, key = messages.after_silence(message, event.silenced_by), f"unsilenced:{event.pk}"
            else:
                message, key = messages.after_inhibition(message, event.inhibited_by), f"uninhibited:{event.pk}"
            planned += _plan_event(incident, event, reason, message, key)
        IncidentEvent.objects.filter(HELD, incident=incident, released=False).update(released=True)
    return enqueue(planned) if enqueued else planned


def _plan_event(incident: Incident, event: IncidentEvent, reason: str, message: messages.Message,
                dedupe_key: str) -> list[int]:
    told = _told(incident)
    planned = []
    for channel in NotificationChannel.objects.filter(enabled=True):
        first_news = (reason in (Reason.OPENED, Reason.ESCALATED) and not channel.escalates
                      and channel.receives(incident.kind, event.level))
        if not (channel.pk in told or first_news):
            continue
        # Monitoring that stalled is told alone and at once: the web process sends it itself (monitoring/deadman.py),
        # since the worker that sends groups when they fall due may be the part that stalled.
        if channel.groups and incident.kind != Incident.Kind.MONITORING:
            group, schedule = grouping.add(channel, incident, event, message, dedupe_key)
            if schedule:
                planned.append(group.pk)
        else:
            single = _plan(channel, message, dedupe_key, incident=incident, event=event)
            if single:
                planned.append(single.pk)
    return planned


def _told(incident: Incident) -> set[int]:
    """The channels that were told (or are about to be) about an incident, alone or in a group."""
    about = Q(incident=incident) | Q(items__incident=incident)
    return set(Notification.objects.filter(about).values_list("channel_id", flat=True))


def plan_repeats() -> list[int]:
    """Plan the reminders that are due now for red, unacknowledged incidents."""
    now = timezone.now()
    channels = list(NotificationChannel.objects.filter(enabled=True, repeat_minutes__gt=0, escalate_after_minutes=0))
    planned = []
    if not channels:
        return planned
    for incident, red_since in _unacknowledged_reds(now):
        for channel in channels:
            if not channel.receives(incident.kind, Level.RED):
                continue
            number = int((now - red_since.at) / timedelta(minutes=channel.repeat_minutes))
            if number < 1:
                continue
            message = messages.for_repeat(incident, red_since, number)
            planned.append(_plan(channel, message, f"repeat:{red_since.pk}:{number}", incident=incident,
                                 event=red_since))
    return enqueue([n.pk for n in planned if n])


def plan_escalations() -> list[int]:
    """Send red incidents nobody acknowledged in time to the escalation channels whose step has come."""
    now = timezone.now()
    channels = list(NotificationChannel.objects.filter(enabled=True, escalate_after_minutes__gt=0)
                    .order_by("escalate_after_minutes", "pk"))
    planned = []
    for incident, red_since in _unacknowledged_reds(now) if channels else []:
        for channel in channels:
            if not channel.receives(incident.kind, Level.RED):
                continue
            if now - red_since.at >= timedelta(minutes=channel.escalate_after_minutes):
                message = messages.for_escalation(incident, red_since, channel.escalate_after_minutes)
                planned.append(_plan(channel, message, f"escalate:{red_since.pk}", incident=incident,
                                     event=red_since))
    return enqueue([n.pk for n in planned if n])


def _unacknowledged_reds(now):
    """(incident, the event that made it red) for each open, red, unacknowledged incident that is neither
    silenced nor inhibited."""
    quiet, causes = silences.active(now), inhibition.causes()
    for incident in Incident.objects.open().filter(level=Level.RED, acknowledged_at__isnull=True):
        if (silences.covering(incident, among=quiet) is not None
                or inhibition.cause_of(incident, among=causes) is not None):
            continue
        red_since = (incident.events.filter(level=Level.RED, kind__in=[EventKind.OPENED, EventKind.ESCALATED])
                     .order_by("at", "pk").last())
        if red_since is not None:
            yield incident, red_since


def plan_channel_test(channel: NotificationChannel) -> Notification:
    """A one-off test message for the admin's "send test" action."""
    return _plan(channel, messages.for_channel_test(channel.name), f"test:{uuid.uuid4().hex}")


def _plan(channel, message: messages.Message, dedupe_key: str, **fields) -> Notification | None:
    now = timezone.now()
    try:
        with transaction.atomic():
            return Notification.objects.create(
                channel=channel, dedupe_key=dedupe_key, reason=message.reason, level=message.level,
                subject=message.subject[:300], payload=message.as_payload(), created_at=now, next_attempt_at=now,
                **fields,
            )
    except IntegrityError:
        return None  # planned already, by another run of the same step


def enqueue(notification_ids: list[int]) -> list[int]:
    """One Celery task per notification, so a slow or dead channel holds up nobody else; a group's runs
    when the group closes (the stalled-notification sweep is the backstop if that task is lost)."""
    def send():
        now = timezone.now()
        due = dict(Notification.objects.filter(pk__in=notification_ids).values_list("pk", "next_attempt_at"))
        for pk in notification_ids:
            wait = (due.get(pk) or now) - now
            try:
                jobs.enqueue(DELIVER_TASK, pk, countdown=wait.total_seconds() if wait > timedelta(0) else None)
            except OperationalError as exc:
                # The row is in the database: the stalled-notification sweep queues it again.
                log.warning("cannot queue notification %s (%s); the sweep will retry", pk, exc)

    transaction.on_commit(send)
    return notification_ids
