import uuid
from itertools import pairwise

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from glmadmin.lib.http import AddressPolicy

from .cleanup.policy import parse_size, root_problem, validate_log_patterns, validate_patterns, validate_size
from .levels import Level, evaluate

PERCENT = [MinValueValidator(0), MaxValueValidator(100)]


class WatchedFilesystem(models.Model):
    """A filesystem whose usage is checked, with its alert thresholds."""

    path = models.CharField(max_length=500, unique=True, help_text="Any absolute path on the filesystem to watch.")
    label = models.CharField(max_length=100, help_text="Short name shown in alerts, e.g. 'models' or 'root'.")
    enabled = models.BooleanField(default=True)
    yellow_enabled = models.BooleanField("yellow on", default=True)
    yellow_percent = models.FloatField("yellow at %", default=85.0, validators=PERCENT)
    orange_enabled = models.BooleanField("orange on", default=True)
    orange_percent = models.FloatField("orange at %", default=92.0, validators=PERCENT)
    red_enabled = models.BooleanField("red on", default=True)
    red_percent = models.FloatField(
        "red at %", default=97.0, validators=PERCENT, help_text="Red pauses new inference requests."
    )
    clear_margin = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="An alert clears only when usage drops this many points below its threshold.",
    )
    # The latest reading, kept here so the status bar needs no query on the samples.
    last_percent = models.FloatField(null=True, blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)

    class Meta:
        ordering = ["path"]
        verbose_name = "watched filesystem"

    def __str__(self):
        return f"{self.label} ({self.path})"

    @property
    def source(self) -> str:
        return f"disk:{self.path}"

    def thresholds(self) -> dict[str, float]:
        levels = {
            Level.YELLOW: (self.yellow_enabled, self.yellow_percent),
            Level.ORANGE: (self.orange_enabled, self.orange_percent),
            Level.RED: (self.red_enabled, self.red_percent),
        }
        return {level: percent for level, (on, percent) in levels.items() if on}

    def level_for(self, percent: float, current: str | None) -> str | None:
        return evaluate(percent, self.thresholds(), current, self.clear_margin)

    def clean(self):
        errors = {}
        if self.path and not self.path.startswith("/"):
            errors["path"] = "Use an absolute path (starting with /)."
        enabled = [(level, pct) for level, pct in self.thresholds().items() if pct is not None]
        for (low, low_pct), (high, high_pct) in pairwise(enabled):
            if low_pct >= high_pct:
                errors[f"{high}_percent"] = (
                    f"The {high} threshold ({high_pct:g} %) must be above the {low} threshold ({low_pct:g} %)."
                )
        if errors:
            raise ValidationError(errors)


class DiskSample(models.Model):
    filesystem = models.ForeignKey(WatchedFilesystem, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(db_index=True)
    percent = models.FloatField()
    used_bytes = models.BigIntegerField()
    total_bytes = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["filesystem", "at"])]

    def __str__(self):
        return f"{self.filesystem_id} {self.at:%Y-%m-%d %H:%M:%S} {self.percent:.1f} %"


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

    source = models.CharField(max_length=200, help_text="What the incident is about, e.g. disk:/data.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
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

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    level = models.CharField(max_length=10, choices=Level.choices, blank=True)
    value = models.FloatField(null=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self):
        return f"{self.get_kind_display()} {self.level}".strip()


# --- notifications ------------------------------------------------------------
# Where alerts are sent, and one row per message and per attempt: the history
# is the proof of what people were told. The logic is in monitoring/notifications/.


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
    def is_healthy(self) -> bool:
        return self.consecutive_failures < self.UNHEALTHY_AFTER

    def receives(self, incident_kind: str, level: str) -> bool:
        """Whether an incident of this kind opening or escalating to level is sent here."""
        kinds_ok = not self.incident_kinds or incident_kind in self.incident_kinds
        return self.enabled and kinds_ok and level in self.levels

    def clean(self):
        from .notifications.transports import config_errors  # the transports know what each kind needs

        errors = config_errors(self)
        if errors:
            raise ValidationError(errors)


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
    payload = models.JSONField(help_text="The message as planned; every attempt sends exactly this.")
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


# --- cleanup ------------------------------------------------------------------
# What may be cleaned (policies, edited in the admin and read at each run, so a
# change needs no restart) and what each run did. The logic is in monitoring/cleanup/.


class CleanupPolicy(models.Model):
    """A cache directory kept under a size limit by removing its oldest unused files."""

    class LogLevel(models.TextChoices):
        SUMMARY = "INFO", "Summary of each run"
        FILES = "DEBUG", "Every file removed or kept"

    name = models.SlugField(max_length=60, unique=True)
    root = models.CharField(
        max_length=500, help_text="Absolute path of the directory to clean, e.g. /root/.cache/vllm.",
    )
    enabled = models.BooleanField(default=True)
    engine_cache = models.BooleanField(
        "engine cache", default=True, help_text="Counted in the status bar's CACHE size.")
    max_size = models.CharField(
        max_length=20, default="2G", validators=[validate_size],
        help_text="Files are removed only while the directory is over this size: 2G, 500M, 800K.")
    min_age_hours = models.PositiveIntegerField(
        "minimum age (hours)", default=168,
        help_text="Only files neither modified nor changed (mtime and ctime) for this long are removed.")
    include = models.TextField(
        blank=True, default="*", validators=[validate_patterns],
        help_text="Glob patterns, one per line: a file must match one. With a /, matched against the path "
                  "below the root (models/*.bin), else against the file name (*.tmp).")
    exclude = models.TextField(blank=True, validators=[validate_patterns],
                               help_text="Glob patterns, one per line: files matching one are never removed.")
    log_level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.SUMMARY,
                                 help_text="What each run writes to the cleanup log (data/logs/cleanup.log).")
    # Measured by each run and by the periodic size check: the status bar reads these, never the disk.
    last_size_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    last_size_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "cleanup policy"
        verbose_name_plural = "cleanup policies"

    def __str__(self):
        return self.name

    @property
    def max_bytes(self) -> int:
        return parse_size(self.max_size)

    def clean(self):
        problem = root_problem(self.root or "")
        if problem:
            raise ValidationError({"root": problem})


class LogPolicy(models.Model):
    """Log files rotated by size: engine logs live (by their writer), others by each cleanup run."""

    name = models.SlugField(max_length=60, unique=True)
    patterns = models.TextField(
        validators=[validate_log_patterns],
        help_text="Absolute glob patterns of the log files, one per line, e.g. /srv/glmadmin/engines/*/engine.log.")
    enabled = models.BooleanField(default=True)
    max_file_size = models.CharField(max_length=20, default="50M", validators=[validate_size],
                                     help_text="A log file is rotated when it grows past this: 50M, 1G.")
    keep = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(100)],
                                            help_text="Rotated files kept (name.1 is the newest); older ones go.")
    compress = models.BooleanField(default=True, help_text="gzip rotated files.")

    class Meta:
        ordering = ["name"]
        verbose_name = "log policy"
        verbose_name_plural = "log policies"

    def __str__(self):
        return self.name

    @property
    def max_bytes(self) -> int:
        return parse_size(self.max_file_size)


class CleanupRun(models.Model):
    """One cleanup of one policy: why it ran, what it looked at, what it removed or kept and why."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        INCIDENT = "incident", "Disk alert"
        MANUAL = "manual", "Clean now (dashboard)"
        COMMAND = "command", "manage.py clean_cache"

    class Kind(models.TextChoices):
        CACHE = "cache", "Cache"
        LOGS = "logs", "Logs"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        OVER_LIMIT = "over_limit", "Still over the limit"
        FAILED = "failed", "Failed"

    MAX_LISTED = 200  # removed files listed one by one; the rest are counted

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.CACHE)
    policy = models.ForeignKey(CleanupPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    log_policy = models.ForeignKey(LogPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    policy_name = models.CharField(max_length=60)
    root = models.CharField(max_length=500, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="cleanup_runs")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    limit_bytes = models.BigIntegerField(null=True, blank=True)
    size_before = models.BigIntegerField(null=True, blank=True)
    size_after = models.BigIntegerField(null=True, blank=True)
    files_scanned = models.PositiveIntegerField(default=0)
    files_removed = models.PositiveIntegerField(default=0, help_text="Dry run: files that would be removed.")
    bytes_freed = models.BigIntegerField(default=0)
    skipped = models.JSONField(default=dict, blank=True, help_text="Files kept, counted by reason.")
    removed = models.JSONField(default=list, blank=True, help_text="[path, bytes] of removed files (capped).")
    errors = models.JSONField(default=list, blank=True, help_text="[path, error] (capped).")
    error_count = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]
        verbose_name = "cleanup run"

    def __str__(self):
        return f"{self.policy_name} {self.started_at:%Y-%m-%d %H:%M}{' (dry run)' if self.dry_run else ''}"

    @property
    def removed_unlisted(self) -> int:
        return max(self.files_removed - len(self.removed), 0)


# --- telemetry ------------------------------------------------------------------
# What each sampling cycle saw, as time series: one row per cycle and subject at
# raw resolution (kept hours), averaged into one row per minute (kept days).
# The sampling and storage logic is in monitoring/telemetry/.


class TelemetrySettings(models.Model):
    """How often telemetry is sampled and how long it is kept: one row, read at each run (no restart)."""

    sample_interval_seconds = models.PositiveIntegerField(
        "sample every (seconds)", default=10, validators=[MinValueValidator(2), MaxValueValidator(3600)],
        help_text="How often GPUs, engines and the host are sampled.")
    raw_retention_hours = models.PositiveIntegerField(
        "keep raw samples (hours)", default=24, validators=[MinValueValidator(1), MaxValueValidator(24 * 30)],
        help_text="Every sample is kept this long; older ones survive only as 1-minute averages.")
    minute_retention_days = models.PositiveIntegerField(
        "keep 1-minute averages (days)", default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)])

    class Meta:
        verbose_name = verbose_name_plural = "telemetry settings"

    def __str__(self):
        return "Telemetry settings"

    def save(self, *args, **kwargs):
        self.pk = 1  # a singleton: the admin can only ever edit the one row
        super().save(*args, **kwargs)
        from .telemetry.schedule import apply_interval  # beat reads its schedule from the database

        apply_interval(self.sample_interval_seconds)

    @classmethod
    def load(cls) -> "TelemetrySettings":
        return cls.objects.get_or_create(pk=1)[0]


class Resolution(models.TextChoices):
    RAW = "raw", "Each sample"
    MINUTE = "minute", "1-minute average"


class GpuSample(models.Model):
    at = models.DateTimeField()
    resolution = models.CharField(max_length=6, choices=Resolution.choices, default=Resolution.RAW)
    host = models.CharField(max_length=100)  # the glmadmin host (GLMADMIN_HOST_NAME) whose GPU this is
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=100, blank=True)
    memory_used = models.BigIntegerField()
    memory_total = models.BigIntegerField()
    utilization = models.FloatField(null=True)
    temperature = models.FloatField(null=True)
    power_draw = models.FloatField(null=True)
    power_limit = models.FloatField(null=True)

    class Meta:
        indexes = [models.Index(fields=["resolution", "at"], name="gpusample_res_at")]
        constraints = [models.UniqueConstraint(fields=["host", "index", "at"], condition=Q(resolution="minute"),
                                               name="one_gpu_minute")]

    def __str__(self):
        return f"{self.host} GPU {self.index} {self.at:%Y-%m-%d %H:%M:%S} ({self.resolution})"


class EngineSample(models.Model):
    at = models.DateTimeField()
    resolution = models.CharField(max_length=6, choices=Resolution.choices, default=Resolution.RAW)
    # No foreign key: a deleted engine's history ages out with the rest, and deleting an engine never
    # has to walk millions of samples.
    engine_id = models.PositiveIntegerField()
    kv_cache_usage = models.FloatField(null=True)
    requests_running = models.FloatField(null=True)
    requests_waiting = models.FloatField(null=True)
    ttft_p50 = models.FloatField(null=True)
    ttft_p95 = models.FloatField(null=True)
    generation_tokens_per_s = models.FloatField(null=True)
    prefix_cache_hit_rate = models.FloatField(null=True)
    rss_bytes = models.BigIntegerField(null=True)

    class Meta:
        indexes = [models.Index(fields=["resolution", "at"], name="enginesample_res_at")]
        constraints = [models.UniqueConstraint(fields=["engine_id", "at"], condition=Q(resolution="minute"),
                                               name="one_engine_minute")]

    def __str__(self):
        return f"engine {self.engine_id} {self.at:%Y-%m-%d %H:%M:%S} ({self.resolution})"


class HostSample(models.Model):
    at = models.DateTimeField()
    resolution = models.CharField(max_length=6, choices=Resolution.choices, default=Resolution.RAW)
    host = models.CharField(max_length=100)
    cpu_percent = models.FloatField(null=True)
    memory_used = models.BigIntegerField()
    memory_total = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["resolution", "at"], name="hostsample_res_at")]
        constraints = [models.UniqueConstraint(fields=["host", "at"], condition=Q(resolution="minute"),
                                               name="one_host_minute")]

    def __str__(self):
        return f"{self.host} {self.at:%Y-%m-%d %H:%M:%S} ({self.resolution})"


# The telemetry rules' thresholds live beside the rules; Django finds models through this module.
from .telemetry.rule_models import *  # noqa: E402,F401,F403
