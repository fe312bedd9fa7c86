"""The alerting core's records: incidents with their events, where alerts go, and what was sent.

Incidents are produced by every part (disks, engines, cleanup, telemetry); the logic that drives
them is in incidents.py, who is told what in notifications/.
"""

import fnmatch
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from glmadmin.lib.http import AddressPolicy

from .levels import Level


class IncidentQuerySet(models.QuerySet):
    def open(self):
        return self.filter(resolved_at__isnull=True)


class Incident(models.Model):
    """One episode of trouble on one subject, from open to resolved."""

    class Kind(models.TextChoices):
        DISK = "disk", "Disk usage"
        ENGINE = "engine", "Engine"
        CLEANUP = "cleanup", "Cleanup"
        GPU = "gpu", "GPU"
        TELEMETRY = "telemetry", "Telemetry"
        WORKER = "worker", "Background worker"
        CHECK = "check", "Check stalled"  # a check that did not finish within its deadline (a hung mount, NVML)
        MONITORING = "monitoring", "Monitoring stalled"  # no check completed for too long (the dead man's switch)

    source = models.CharField(max_length=200, help_text="What the incident is about, e.g. disk:/data.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    host = models.CharField(max_length=100, blank=True, db_index=True,
                            help_text="The glmadmin host the trouble is on (GLMADMIN_HOST_NAME, an engine's host): "
                                      "inhibition and grouping act per host.")
    title = models.CharField(max_length=200)
    level = models.CharField(max_length=10, choices=Level.choices)
    peak_level = models.CharField(max_length=10, choices=Level.choices)
    value = models.FloatField(null=True, blank=True, help_text="The reading at the last transition.")
    message = models.CharField(max_length=500)
    is_test = models.BooleanField(default=False, help_text="Fired by manage.py test_alert.")
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    objects = IncidentQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # The database, not the checker, guarantees one open incident per subject:
            # two workers opening it at the same moment cannot both succeed.
            models.UniqueConstraint(
                fields=["source"], condition=Q(resolved_at__isnull=True), name="one_open_per_source"
            )
        ]

    def __str__(self):
        return f"{self.get_level_display()}: {self.title}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def pauses_admission(self) -> bool:
        return self.is_open and self.level == Level.RED


class IncidentEvent(models.Model):
    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        ESCALATED = "escalated", "Escalated"
        DEESCALATED = "deescalated", "De-escalated"
        RESOLVED = "resolved", "Resolved"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        # What was done about it (a remedy step, its duration and whether it cured the condition): recorded,
        # not sent.
        ACTION = "action", "Action"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    level = models.CharField(max_length=10, choices=Level.choices, blank=True)
    value = models.FloatField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.CharField(max_length=500, blank=True, help_text="Why, for a transition made by a person or "
                            "by a change of what is watched (e.g. resolved by hand, filesystem removed).")
    # Set when a silence kept this transition from being sent; released once told after the silence ended.
    silenced_by = models.ForeignKey("Silence", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="silenced_events")
    # Set when an open red disk incident on the same host kept this transition (of an engine or telemetry
    # incident, an echo of the full disk) from being sent; released like a silenced one once the disk is no
    # longer red (alerts/inhibition.py).
    inhibited_by = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="inhibited_events")
    released = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.level}".strip()


# --- silences -----------------------------------------------------------------
# Quiet on purpose: a matching incident is recorded and shown, but nobody is told. The logic is in
# alerts/silences.py; the planner asks it before every message.


class SilenceQuerySet(models.QuerySet):
    def candidates(self, at=None):
        """Silences that may be active at `at`: one-off ones in their period, and every started daily one
        (whether a daily window is open right now is Silence.is_active's to say)."""
        at = at or timezone.now()
        return self.filter(Q(starts_at__lte=at) & (Q(ends_at__gt=at) | Q(daily=True)))


class Silence(models.Model):
    """While active, incidents it matches notify nobody; they are still recorded and shown."""

    source = models.CharField(
        max_length=200, blank=True,
        help_text="What incidents are about, as a pattern: engine:gpu-b:* (every engine on host gpu-b), "
                  "engine:local:glm, disk:/data. Empty: any.")
    kind = models.CharField(max_length=20, choices=Incident.Kind.choices, blank=True, help_text="Empty: any kind.")
    level = models.CharField(max_length=10, choices=Level.choices, blank=True, help_text="Empty: any level.")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    daily = models.BooleanField(
        "every day (maintenance window)", default=False,
        help_text="Repeat the period from start to end every day from the start on, e.g. 02:55-03:30 around "
                  "the daily engine restarts: an incident of the window still open after it ends is sent once.")
    reason = models.CharField(max_length=300, help_text="Why, for whoever wonders tomorrow, e.g. replacing a card.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = SilenceQuerySet.as_manager()

    class Meta:
        ordering = ["-ends_at", "-pk"]

    def __str__(self):
        what = " ".join(part for part in (self.source, self.kind, self.level) if part)
        return f"silence {what} until {self.ends_at:%Y-%m-%d %H:%M}"

    def matches(self, incident: "Incident", level: str | None = None) -> bool:
        """Whether this silence covers `incident` (at `level`, default its current one)."""
        level = level or incident.level
        return (fnmatch.fnmatchcase(incident.source, self.source or "*")
                and self.kind in ("", incident.kind) and self.level in ("", level))

    def is_active(self, at=None) -> bool:
        at = at or timezone.now()
        if at < self.starts_at:
            return False
        if not self.daily:
            return at < self.ends_at
        return (at - self.starts_at) % timedelta(days=1) < self.ends_at - self.starts_at

    def clean(self):
        errors = {}
        if not (self.source or self.kind or self.level):
            errors["source"] = "Say what to silence (a pattern, a kind or a level): a silence of everything " \
                               "would hide every alert."
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The end must be after the start."
        elif self.daily and self.ends_at - self.starts_at >= timedelta(days=1):
            errors["ends_at"] = "A daily window must be shorter than a day."
        if errors:
            raise ValidationError(errors)


# --- notifications ------------------------------------------------------------
# Where alerts are sent, and one row per message and per attempt: the history
# is the proof of what people were told. The logic is in alerts/notifications/.


def default_channel_levels() -> list[str]:
    return [Level.RED.value]


class NotificationChannel(models.Model):
    """Somewhere alerts go: a list of email addresses, a webhook, a team chat robot."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email (SMTP)"
        WEBHOOK = "webhook", "Webhook (JSON POST)"
        SLACK = "slack", "Slack-compatible webhook"
        WECOM = "wecom", "WeCom group robot"
        DINGTALK = "dingtalk", "DingTalk robot"

    ADDRESS_POLICIES = [
        (AddressPolicy.PUBLIC.value, "Public addresses only"),
        (AddressPolicy.PRIVATE.value, "Also loopback and private networks (an on-premise server)"),
        (AddressPolicy.ANY.value, "Any address, even link-local and cloud metadata (unsafe)"),
    ]
    # Failed attempts in a row after which the channel shows as failing.
    UNHEALTHY_AFTER = 3

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    recipients = models.TextField(blank=True, help_text="Email: addresses, separated by commas or new lines.")
    url = models.CharField("URL", max_length=1000, blank=True,
                           help_text="Webhook and robots: the http(s) URL to POST to, with its key or token.")
    secret = models.CharField(max_length=200, blank=True, help_text=(
        "Optional. Webhook: signs each body (header X-Glmadmin-Signature: sha256=HMAC). "
        "DingTalk: the robot's signing secret (SEC...)."))
    address_policy = models.CharField("addresses allowed", max_length=10, choices=ADDRESS_POLICIES,
                                      default=AddressPolicy.PUBLIC.value)
    levels = models.JSONField(default=default_channel_levels, help_text="Levels whose opening or escalation is sent.")
    incident_kinds = models.JSONField(default=list, blank=True, help_text="Kinds of incident sent; none ticked: all.")
    repeat_minutes = models.PositiveIntegerField(
        "repeat red every (minutes)", default=30,
        help_text="An unacknowledged red incident is sent again this often; 0 never repeats.")
    escalate_after_minutes = models.PositiveIntegerField(
        "escalation step: after (minutes)", default=0,
        help_text="0: told as incidents happen. N: an escalation step, e.g. the on-call robot at 15, a manager "
                  "at 60: told only about red incidents nobody acknowledged within N minutes (then about their "
                  "later changes); acknowledging stops the escalation.")
    group_wait_seconds = models.PositiveIntegerField(
        "group wait (seconds)", default=30,
        help_text="Changes of incidents on one host within this many seconds of the first are sent as one message "
                  "(a full disk and the engines it stops, in one). A single incident waits this long, no more; "
                  "0 sends each change at once, alone.")
    group_interval_minutes = models.PositiveIntegerField(
        "group interval (minutes)", default=5,
        help_text="After a host's message, its incidents' later de-escalations and resolves are collected and sent "
                  "together at most this often. New incidents and anything red still wait only the group wait.")
    # Written by each delivery attempt.
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_failure_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "notification channel"

    def __str__(self):
        return self.name

    @property
    def escalates(self) -> bool:
        return self.escalate_after_minutes > 0

    @property
    def groups(self) -> bool:
        return self.group_wait_seconds > 0

    @property
    def is_healthy(self) -> bool:
        return self.consecutive_failures < self.UNHEALTHY_AFTER

    def receives(self, incident_kind: str, level: str) -> bool:
        """Whether an incident of this kind opening or escalating to level is sent here."""
        kinds_ok = not self.incident_kinds or incident_kind in self.incident_kinds
        return self.enabled and kinds_ok and level in self.levels


class Notification(models.Model):
    """One message to one channel: about an incident transition, a reminder, or a channel test.

    (channel, dedupe_key) is unique, so planning the same message twice (two
    workers, a retried task) yields one row, and the row's status is claimed
    with a conditional UPDATE before each send.
    """

    class Reason(models.TextChoices):
        OPENED = "opened", "Opened"
        ESCALATED = "escalated", "Escalated"
        DEESCALATED = "deescalated", "De-escalated"
        RESOLVED = "resolved", "Resolved"
        REPEAT = "repeat", "Reminder (red, not acknowledged)"
        ESCALATION = "escalation", "Escalation (red, not acknowledged)"
        GROUP = "group", "Grouped changes (one host)"
        TEST = "test", "Channel test"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed (gave up)"
        CANCELLED = "cancelled", "Cancelled"

    key = models.UUIDField(
        default=uuid.uuid4, unique=True, editable=False,
        help_text="Sent with the message (Idempotency-Key, Message-ID) so receivers can drop repeats.")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="notifications")
    event = models.ForeignKey(IncidentEvent, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="notifications")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    dedupe_key = models.CharField(max_length=100)
    level = models.CharField(max_length=10, choices=Level.choices, blank=True)
    subject = models.CharField(max_length=300)
    payload = models.JSONField(help_text="The message as planned; every attempt sends exactly this. A grouped "
                               "message is written when its group closes, before its first attempt.")
    group = models.CharField(
        max_length=100, blank=True,
        help_text="A grouped message: the host whose incidents' changes it collects (its items); empty: a message "
                  "sent alone.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True,
                                         help_text="While sending: after this the worker is presumed dead.")
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedupe_key"], name="one_notification_per_channel_and_key"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self):
        return f"{self.subject} -> {self.channel_id} ({self.status})"


class NotificationItem(models.Model):
    """One incident transition in a grouped message: what it says alone, listed in the group's message.

    (channel, dedupe_key) is unique like a Notification's, so planning the same transition twice adds it once.
    """

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="items")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="+")
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notification_items")
    event = models.ForeignKey(IncidentEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dedupe_key = models.CharField(max_length=100)
    reason = models.CharField(max_length=20, choices=Notification.Reason.choices)
    level = models.CharField(max_length=10, choices=Level.choices, blank=True)
    payload = models.JSONField(help_text="The transition's message as it would be sent alone.")
    added_at = models.DateTimeField()

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "dedupe_key"], name="one_item_per_channel_and_key"),
        ]

    def __str__(self):
        return self.payload.get("subject", "")


class DeliveryAttempt(models.Model):
    """One try at sending a notification, with its outcome."""

    class Status(models.TextChoices):
        SENDING = "sending", "In progress"
        OK = "ok", "Delivered"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted (worker stopped)"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SENDING)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self):
        return f"attempt {self.number}: {self.status}"


