"""What may be cleaned (policies, edited in the admin and read at each run, so a change needs no
restart) and what each run did. The logic is in monitoring/cleanup/."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models

from ..cleanup.policy import (
    MAX_KEEP,
    Refused,
    canonical_pattern,
    checked_root,
    parse_size,
    root_problem,
    split_patterns,
    validate_log_patterns,
    validate_patterns,
    validate_size,
)


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
        self.root = checked_root(self.root)  # saved in its canonical spelling: //srv/cache/ is /srv/cache


class LogPolicy(models.Model):
    """Log files rotated by size: engine logs live (by their writer), others by each cleanup run."""

    name = models.SlugField(max_length=60, unique=True)
    patterns = models.TextField(
        validators=[validate_log_patterns],
        help_text="Absolute glob patterns of the log files, one per line, e.g. /var/log/glmadmin/*.log; only in "
                  "the directories cleanup may act in (GLMADMIN_CLEANUP_ALLOWED_ROOTS).")
    enabled = models.BooleanField(default=True)
    max_file_size = models.CharField(max_length=20, default="50M", validators=[validate_size],
                                     help_text="A log file is rotated when it grows past this: 50M, 1G.")
    keep = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(MAX_KEEP)],
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

    def clean(self):
        try:  # saved in their canonical spelling
            self.patterns = "\n".join(canonical_pattern(p) for p in split_patterns(self.patterns))
        except Refused:
            pass  # the field's validator has said why


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
    incident = models.ForeignKey("alerts.Incident", null=True, blank=True, on_delete=models.SET_NULL,
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
    notes = models.JSONField(default=list, blank=True,
                             help_text="[what, why] of what the run passed over on purpose: mount points, the "
                                       "processes the open-file check could not read.")
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
