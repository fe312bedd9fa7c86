"""Grouping: the changes of one host's incidents reach a channel as one message.

As Alertmanager's group_wait and group_interval, set per channel (NotificationChannel.group_*):

- The first change of a host's incidents opens a group for the channel. Every change of that host's
  incidents within the channel's group wait (30 s) joins it; then it is sent as one message listing
  each change. A group of one is the change's own message, as if sent alone, group-wait late.
- After a host's message went out, later changes that are not news (de-escalations, resolves) join a
  group that closes one group interval (5 min) after the previous message started, so a host that
  settles sends one summary, not a message per incident.
- An opening, an escalation and anything red never wait longer than the group wait: joining a group
  that would close later pulls its close in.

A group is a Notification row (`group` = "host:NAME") with one NotificationItem per change. It takes
new items while pending and never tried (attempt_count 0); delivery claims it like any row, which
closes it, and writes its words from the items at that first claim, so every retry sends the same
message. Joining locks the row (select_for_update on PostgreSQL; SQLite's IMMEDIATE transactions
serialise writers), so no item is added to a group that is being sent.
"""

import uuid
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import inhibition
from ..levels import Level
from ..models import DeliveryAttempt, Incident, IncidentEvent, Notification, NotificationChannel, NotificationItem
from .messages import Message, for_group

Reason = Notification.Reason
# Changes that are news: never held past the group wait, even right after the host's last message.
URGENT = frozenset({Reason.OPENED, Reason.ESCALATED})


def key(host: str) -> str:
    return f"host:{host}"


def add(channel: NotificationChannel, incident: Incident, event: IncidentEvent, message: Message,
        dedupe_key: str) -> tuple[Notification | None, bool]:
    """Put one change into the channel's open group for the incident's host, opening one if needed.

    Returns (the group, whether it needs a delivery task queued: it is new or now closes earlier);
    (None, False) when this change was added before (a second planner, a retried task).
    """
    now = timezone.now()
    close_at = _close_at(channel, incident.host, message, now)
    try:
        with transaction.atomic():
            group = (Notification.objects.select_for_update()
                     .filter(channel=channel, group=key(incident.host), status=Notification.Status.PENDING,
                             attempt_count=0).order_by("pk").first())
            schedule = group is None or close_at < group.next_attempt_at
            if group is None:
                group = Notification.objects.create(
                    channel=channel, group=key(incident.host), dedupe_key=f"group:{uuid.uuid4().hex}",
                    reason=message.reason, level=message.level, subject=message.subject[:300], payload={},
                    created_at=now, next_attempt_at=close_at, incident=incident, event=event)
            elif schedule:
                Notification.objects.filter(pk=group.pk).update(next_attempt_at=close_at)
            NotificationItem.objects.create(
                notification=group, channel=channel, incident=incident, event=event, dedupe_key=dedupe_key,
                reason=message.reason, level=message.level, payload=message.as_payload(), added_at=now)
    except IntegrityError:
        return None, False  # this change is in a group already
    return group, schedule


def _close_at(channel: NotificationChannel, host: str, message: Message, now):
    wait = now + timedelta(seconds=channel.group_wait_seconds)
    if message.reason in URGENT or message.level == Level.RED:
        return wait
    last = (DeliveryAttempt.objects.filter(notification__channel=channel, notification__group=key(host), number=1)
            .order_by("-started_at").values_list("started_at", flat=True).first())
    if last is None:
        return wait
    return max(wait, last + timedelta(minutes=channel.group_interval_minutes))


def close(notification: Notification) -> Message | None:
    """Write a claimed group's message from its items, once (later tries reuse it).

    A change whose incident is now inhibited (its host's disk turned red while the group waited) is
    left out and marked on its event, to be sent if the incident outlasts the red disk. None when
    nothing is left to say.
    """
    if notification.payload:
        return Message.from_payload(notification.payload)
    items = list(notification.items.select_related("incident", "event__incident"))
    found = inhibition.causes()
    kept = []
    for item in items:
        cause = inhibition.holds(item.event, found) if item.event is not None else None
        if cause is None:
            kept.append(item)
            continue
        IncidentEvent.objects.filter(pk=item.event_id).update(inhibited_by=cause, released=False)
        item.delete()  # not sent: planning its release later must not find it taken
    if not kept:
        # About no incident any more: a later change of the first one must not find this channel "told".
        Notification.objects.filter(pk=notification.pk).update(incident=None, event=None)
        return None
    message = for_group(kept[0].incident.host, [Message.from_payload(item.payload) for item in kept])
    Notification.objects.filter(pk=notification.pk).update(
        payload=message.as_payload(), subject=message.subject[:300], reason=message.reason, level=message.level,
        incident=kept[0].incident, event=kept[0].event)
    notification.payload = message.as_payload()
    return message


def incidents_of(notification: Notification) -> set[int]:
    """The incidents a message is about: its own, and for a group each item's."""
    ids = set(notification.items.values_list("incident_id", flat=True)) if notification.group else set()
    return ids | ({notification.incident_id} if notification.incident_id else set())
