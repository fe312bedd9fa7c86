"""What each sampling cycle saw, as time series: one row per cycle and subject at raw resolution
(kept hours), averaged into one row per minute (kept days). The logic is in monitoring/telemetry/."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


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
        super().save(*args, **kwargs)  # monitoring.apps moves the beat schedules along (post_save)

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
