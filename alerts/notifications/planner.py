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
  transition (release_silenced, every minute).

Each row is unique per (channel, dedupe_key), so planning twice is harmless.
There is no storm from a flapping value: one event is at most one message per
channel, and events are already rate-limited by the level hysteresis.
"""

import logging
import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from glmadmin import jobs

from .. import silences
from ..levels import Level
from ..models import Incident, IncidentEvent, Notification, NotificationChannel
from . import messages

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
    silence = silences.covering(incident, event.level, at=event.at)
    if silence is not None:
        IncidentEvent.objects.filter(pk=event.pk).update(silenced_by=silence)
        return []
    return enqueue(_plan_event(incident, event, reason, messages.for_event(incident, event, reason),
                               f"event:{event.pk}"))


def release_silenced() -> list[int]:
    """Tell about incidents kept quiet by silences that have ended: once each, if still open."""
    pending = (IncidentEvent.objects.filter(silenced_by__isnull=False, released=False)
               .select_related("incident__acknowledged_by", "silenced_by").order_by("at", "pk"))
    latest = {event.incident_id: event for event in pending}  # the last silenced transition of each
    quiet = silences.active() if latest else []
    planned = []
    for event in latest.values():
        incident = event.incident
        if incident.is_open and silences.covering(incident, among=quiet) is not None:
            continue  # still silenced (perhaps by a newer silence)
        reason = REASON_FOR_EVENT.get(event.kind)
        if incident.is_open and reason is not None:
            message = messages.after_silence(messages.for_event(incident, event, reason), event.silenced_by)
            planned += _plan_event(incident, event, reason, message, f"unsilenced:{event.pk}")
        IncidentEvent.objects.filter(incident=incident, silenced_by__isnull=False, released=False).update(
            released=True)
    return enqueue(planned)


def _plan_event(incident: Incident, event: IncidentEvent, reason: str, message: messages.Message,
                dedupe_key: str) -> list[int]:
    told = set(incident.notifications.values_list("channel_id", flat=True))
    planned = []
    for channel in NotificationChannel.objects.filter(enabled=True):
        first_news = (reason in (Reason.OPENED, Reason.ESCALATED) and not channel.escalates
                      and channel.receives(incident.kind, event.level))
        if channel.pk in told or first_news:
            planned.append(_plan(channel, message, dedupe_key, incident=incident, event=event))
    return [n.pk for n in planned if n]


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
    """(incident, the event that made it red) for each open, red, unacknowledged and unsilenced incident."""
    quiet = silences.active(now)
    for incident in Incident.objects.open().filter(level=Level.RED, acknowledged_at__isnull=True):
        if silences.covering(incident, among=quiet) is not None:
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
    """One Celery task per notification, so a slow or dead channel holds up nobody else."""
    def send():
        for pk in notification_ids:
            try:
                jobs.enqueue(DELIVER_TASK, pk)
            except OperationalError as exc:
                # The row is in the database: the stalled-notification sweep queues it again.
                log.warning("cannot queue notification %s (%s); the sweep will retry", pk, exc)

    transaction.on_commit(send)
    return notification_ids
