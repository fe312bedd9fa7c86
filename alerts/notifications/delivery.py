"""Send one notification once, and keep the record of every try.

deliver() is what the Celery task runs. Before sending, the row is claimed
with a conditional UPDATE (pending and due -> sending, with a lease): two
copies of the task (a redelivered message, the sweep) never send it at the
same time, and a row already sent is never sent again. A worker killed while
sending leaves the row "sending"; when its lease runs out the sweep (or the
broker's redelivery) claims it again, and the attempt it left is marked
interrupted. The one unavoidable window is a kill after the receiver took the
message but before the row was marked sent: then it is sent again, with the
same Idempotency-Key / Message-ID so the receiver can drop it.

A failed try is retried with exponential back-off up to MAX_ATTEMPTS; a
permanent failure (a 404, a refused recipient) is not retried. Each try
updates the channel's health, which the dashboard shows.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..levels import Level
from ..models import DeliveryAttempt, Notification, NotificationChannel
from . import grouping
from .messages import Message
from .transports import DeliveryError, transport_for

log = logging.getLogger(__name__)
Status = Notification.Status

MAX_ATTEMPTS = 6  # with the back-off below: tries over about 15 minutes
FIRST_BACKOFF = timedelta(seconds=30)
MAX_BACKOFF = timedelta(minutes=30)
# Longer than any one try can take (HTTP and SMTP time out well before).
LEASE = timedelta(minutes=2)
# A pending row this late has lost its queued task (broker restarted, enqueue failed).
STALL_GRACE = timedelta(seconds=60)
# A later message about the same incident waits this long after the one before it.
ORDER_GAP = timedelta(seconds=5)


@dataclass(frozen=True)
class Outcome:
    status: str  # sent, retry, failed, cancelled, deferred, skipped
    detail: str = ""
    retry_in: float | None = None  # seconds until the task should run again

    def __str__(self):
        return f"{self.status}: {self.detail}" if self.detail else self.status


def backoff(attempt: int) -> timedelta:
    return min(FIRST_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF)


def deliver(notification_id: int) -> Outcome:
    notification = Notification.objects.select_related("channel", "incident").filter(pk=notification_id).first()
    if notification is None:
        return Outcome("skipped", "no such notification")
    if notification.status in (Status.SENT, Status.FAILED, Status.CANCELLED):
        return Outcome("skipped", f"already {notification.status}")
    now = timezone.now()
    mine = Notification.objects.filter(_free(now), pk=notification.pk)
    stale = _why_stale(notification)
    if stale:
        if not mine.update(status=Status.CANCELLED, last_error=stale, next_attempt_at=None, claimed_until=None):
            return Outcome("skipped", "another worker has it")
        return Outcome("cancelled", stale)
    wait_until = _earlier_message_due(notification, now)
    if wait_until:
        wait_until = max(wait_until, notification.next_attempt_at or now)
        if not mine.update(status=Status.PENDING, next_attempt_at=wait_until, claimed_until=None):
            return Outcome("skipped", "another worker has it")
        return Outcome("deferred", "an earlier message about this incident is not out yet",
                       retry_in=(wait_until - now).total_seconds())
    # The claim: only the caller whose UPDATE changed the row sends.
    if not mine.filter(_due(now)).update(status=Status.SENDING, claimed_until=now + LEASE,
                                         attempt_count=F("attempt_count") + 1):
        return Outcome("skipped", "not due, or another worker has it")
    notification.refresh_from_db(fields=["attempt_count"])
    if notification.group and grouping.close(notification) is None:
        # Claimed, so the group takes no new items; each one it had is now held by a red disk.
        Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
            status=Status.CANCELLED, claimed_until=None, next_attempt_at=None,
            last_error="every change in the group was inhibited by a red disk on its host")
        return Outcome("cancelled", "every change in the group is inhibited")
    return _attempt(notification, now)


def _free(now) -> Q:
    """Rows nobody is working on: pending, or sending by a worker whose lease ran out."""
    return Q(status=Status.PENDING) | Q(status=Status.SENDING, claimed_until__lt=now)


def _due(now) -> Q:
    return Q(status=Status.SENDING) | Q(next_attempt_at__lte=now)


def _why_stale(notification: Notification) -> str:
    """A reason not to send any more, or ''."""
    # A channel test may try a channel before it is switched on.
    if not notification.channel.enabled and notification.reason != Notification.Reason.TEST:
        return "the channel was switched off"
    incident = notification.incident
    if notification.reason in (Notification.Reason.REPEAT, Notification.Reason.ESCALATION):
        if incident.resolved_at:
            return "the incident was resolved"
        if incident.acknowledged_at:
            return f"the incident was acknowledged by {incident.acknowledged_by or 'someone'}"
        if incident.level != Level.RED:
            return "the incident is no longer red"
    return ""


def _earlier_message_due(notification: Notification, now):
    """When an earlier, unfinished message about the same incident to the same channel is next tried.

    Messages about one incident arrive in order: a "resolved" never overtakes
    the "opened" that a failing channel is still retrying (alone or in a group).
    """
    incidents = grouping.incidents_of(notification)
    if not incidents:
        return None
    earlier = (Notification.objects
               .filter(Q(incident_id__in=incidents) | Q(items__incident_id__in=incidents),
                       channel_id=notification.channel_id, pk__lt=notification.pk,
                       status__in=[Status.PENDING, Status.SENDING])
               .order_by("pk").first())
    if earlier is None:
        return None
    busy_until = earlier.claimed_until if earlier.status == Status.SENDING else earlier.next_attempt_at
    return max(busy_until or now, now) + ORDER_GAP


def _attempt(notification: Notification, now) -> Outcome:
    notification.attempts.filter(status=DeliveryAttempt.Status.SENDING).update(
        status=DeliveryAttempt.Status.INTERRUPTED, finished_at=now, error="the worker stopped during this attempt")
    attempt = DeliveryAttempt.objects.create(notification=notification, number=notification.attempt_count,
                                             started_at=now)
    channel = notification.channel
    try:
        transport_for(channel.kind).send(channel, Message.from_payload(notification.payload),
                                         key=str(notification.key))
    except DeliveryError as exc:
        return _failed(notification, attempt, str(exc), permanent=exc.permanent)
    except Exception as exc:  # a bug in a transport must not leave the row claimed until the lease runs out
        log.exception("notification %s: unexpected error", notification.pk)
        return _failed(notification, attempt, f"{type(exc).__name__}: {exc}", permanent=False)
    done = timezone.now()
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
            status=Status.SENT, sent_at=done, claimed_until=None, next_attempt_at=None, last_error="")
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(status=DeliveryAttempt.Status.OK, finished_at=done)
        NotificationChannel.objects.filter(pk=channel.pk).update(consecutive_failures=0, last_success_at=done,
                                                                 last_error="")
    return Outcome("sent", f"to {channel.name} on try {attempt.number}")


def _failed(notification: Notification, attempt: DeliveryAttempt, error: str, *, permanent: bool) -> Outcome:
    done = timezone.now()
    error = error[:500]
    # A channel test reports straight back to the person who clicked: no retries.
    give_up = (permanent or notification.attempt_count >= MAX_ATTEMPTS
               or notification.reason == Notification.Reason.TEST)
    wait = None if give_up else backoff(notification.attempt_count)
    with transaction.atomic():
        Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
            status=Status.FAILED if give_up else Status.PENDING, claimed_until=None,
            next_attempt_at=None if give_up else done + wait, last_error=error)
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(status=DeliveryAttempt.Status.FAILED, finished_at=done,
                                                             error=error)
        NotificationChannel.objects.filter(pk=notification.channel_id).update(
            consecutive_failures=F("consecutive_failures") + 1, last_failure_at=done, last_error=error)
    channel = notification.channel
    log.warning("notification %s to %s failed (try %s): %s", notification.pk, channel.name, attempt.number, error)
    if give_up:
        return Outcome("failed", error)
    return Outcome("retry", error, retry_in=wait.total_seconds())


def stalled() -> list[int]:
    """Rows whose task must have been lost: long overdue, or claimed by a worker that died."""
    now = timezone.now()
    lost = (Q(status=Status.PENDING, next_attempt_at__lte=now - STALL_GRACE)
            | Q(status=Status.SENDING, claimed_until__lt=now))
    return list(Notification.objects.filter(lost).order_by("pk").values_list("pk", flat=True)[:500])


def retry_now(notifications) -> int:
    """Admin action: try pending or failed notifications again at once (one more try for failed ones)."""
    return notifications.filter(status__in=[Status.PENDING, Status.FAILED]).update(
        status=Status.PENDING, next_attempt_at=timezone.now())
