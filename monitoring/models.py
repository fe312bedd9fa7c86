from itertools import pairwise

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

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
