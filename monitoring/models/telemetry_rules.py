"""Thresholds of the telemetry rules, editable in Django admin .

One row holds every rule: the admin shows them on one page, grouped by rule, and the sampler
reads them with one query per cycle (see TelemetryRules.current). The logic is in rules.py.
"""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Subquery

from inference.models import Engine

from .telemetry import TelemetrySettings

__all__ = ["RuleRestart", "TelemetryRules"]

PERCENT = [MinValueValidator(0), MaxValueValidator(100)]
DAY = 24 * 3600
SECONDS = [MaxValueValidator(DAY)]
# Held GPU memory within an engine's reservation plus this fraction of the GPU (CUDA context, NCCL
# buffers) is still what it reserved; beyond it the engine has grown.
RESERVATION_MARGIN = 0.02


def _for(default: int, what: str = "") -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        "for (seconds)", default=default, validators=SECONDS,
        help_text=what or "The condition must hold this long, without a gap in the data, before it is raised.")


class TelemetryRules(models.Model):
    """Every telemetry rule's switch, thresholds, duration and action: one row."""

    # --- GPU memory -----------------------------------------------------------
    gpu_memory_enabled = models.BooleanField("GPU memory rule on", default=True)
    gpu_memory_percent = models.FloatField(
        "GPU memory above (%)", default=95.0, validators=PERCENT,
        help_text="All processes on the GPU together. vLLM holds gpu_memory_utilization of the GPU (0.9 unless "
                  "the engine sets it) from start to stop: keep this above every engine's share plus 2 points.")
    gpu_memory_seconds = _for(120)
    gpu_memory_restart = models.BooleanField(
        "restart the engine on that GPU", default=True,
        help_text="Through the remedy ladder where the engine allows soft restarts (reset its prefix cache, then "
                  "restart it in place, then in full, each step only while the condition lasts), else the normal "
                  "restart path (drain, stop, start); at most once per cool-down, and only "
                  "when the engine's own processes hold more than they reserved (gpu_memory_utilization + 2 % of "
                  "the GPU) while no foreign process holds more than the foreign-process limit: a restart frees "
                  "nothing else, and a foreign process would make the new start fail. The incident says why not.")
    # --- KV cache ---------------------------------------------------------------
    kv_cache_enabled = models.BooleanField("KV-cache rule on", default=True)
    kv_cache_percent = models.FloatField("KV-cache usage above (%)", default=90.0, validators=PERCENT)
    kv_cache_seconds = _for(300)
    # --- foreign processes --------------------------------------------------------
    foreign_enabled = models.BooleanField("foreign process rule on", default=True)
    foreign_gib = models.FloatField(
        "foreign process holds more than (GiB)", default=2.0, validators=[MinValueValidator(0.01)],
        help_text="A process that is not part of an engine, on a GPU an engine was given.")
    foreign_seconds = _for(30)
    # --- tensor-parallel balance --------------------------------------------------
    imbalance_enabled = models.BooleanField("tensor-parallel imbalance rule on", default=True)
    imbalance_idle_percent = models.FloatField("a GPU counts as idle below (% utilisation)", default=5.0,
                                               validators=PERCENT)
    imbalance_busy_percent = models.FloatField("the others count as busy above (% utilisation)", default=50.0,
                                               validators=PERCENT)
    imbalance_seconds = _for(120)
    # --- engine stuck -------------------------------------------------------------
    stuck_enabled = models.BooleanField("stuck engine rule on", default=True)
    stuck_seconds = _for(60, "Requests in flight (waiting or running) and no token generated for this long.")
    stuck_restart = models.BooleanField("restart a stuck engine", default=True,
                                        help_text="The engine core can hang while its HTTP server still answers.")
    # --- time to first token ------------------------------------------------------
    ttft_enabled = models.BooleanField("TTFT rule on", default=True)
    ttft_p95_seconds = models.FloatField("TTFT p95 above (seconds)", default=2.0, validators=[MinValueValidator(0.001)])
    ttft_seconds = _for(300)
    drift_enabled = models.BooleanField("TTFT drift rule on", default=True)
    drift_factor = models.FloatField(
        "TTFT p95 above (× baseline)", default=2.0,
        help_text="The baseline is the median p95 of the engine's first hour after it became ready; "
                  "it starts again with every restart.")
    drift_baseline_minutes = models.PositiveIntegerField(
        "baseline over the first (minutes)", default=60,
        validators=[MinValueValidator(1), MaxValueValidator(DAY // 60)])
    drift_seconds = _for(600)
    drift_restart = models.BooleanField(
        "remedy a drift", default=False,
        help_text="Reset the engine's prefix cache, then restart it in place (soft), then in full, each step only "
                  "while the drift lasts (an engine without soft restarts is restarted in full at once), at most "
                  "once per cool-down. Off: the incident only suggests a restart.")
    # --- data flow ----------------------------------------------------------------
    no_data_enabled = models.BooleanField("no-data rule on", default=True)
    no_data_intervals = models.PositiveSmallIntegerField(
        "no data after (sampling intervals)", default=3, validators=[MinValueValidator(2), MaxValueValidator(1000)],
        help_text="Raised when the last sample is older than this many sampling intervals. A gap this long "
                  "also breaks every 'for' duration above.")
    metrics_missing_enabled = models.BooleanField("missing engine metrics rule on", default=True)
    metrics_missing_cycles = models.PositiveSmallIntegerField(
        "ready engine without /metrics for (cycles)", default=3,
        validators=[MinValueValidator(1), MaxValueValidator(1000)])
    nvml_enabled = models.BooleanField("failing NVML rule on", default=True,
                                       help_text="Never raised on a machine without NVIDIA GPUs.")
    nvml_cycles = models.PositiveSmallIntegerField("NVML failing for (cycles)", default=3,
                                                   validators=[MinValueValidator(1), MaxValueValidator(1000)])
    # --- GPU health (NVML: Xid, ECC, row remapping, clocks, PCIe, NVLink) --------------
    gpu_health_enabled = models.BooleanField(
        "GPU health rules on", default=True,
        help_text="A failing GPU (orange) or a degraded one (yellow), each with what to do, from NVIDIA's Xid "
                  "catalogue and ECC / row-remapping guidance. Signals a GPU does not support raise nothing.")
    gpu_health_stop = models.BooleanField(
        "drain and stop the engine on a failing GPU", default=True,
        help_text="So the gateway stops routing to it; it stays stopped until an operator starts it again once "
                  "the GPU is reset or replaced. glmadmin never resets a GPU itself.")
    gpu_xid_restart = models.BooleanField(
        "restart the engine after an application fault", default=True,
        help_text="Xid 13, 31, 43, 45 and 94: the engine's own fault, which a restart clears (at most once per "
                  "cool-down).")
    gpu_xid_hold_minutes = models.PositiveIntegerField(
        "an Xid counts for (minutes)", default=30, validators=[MinValueValidator(1), MaxValueValidator(DAY // 60)],
        help_text="An Xid is an event, not a level: the GPU's state keeps it this long after the last one.")
    gpu_throttle_seconds = _for(60, "Hardware or thermal clock slowdown must last this long before it is raised.")
    gpu_retired_pages_limit = models.PositiveIntegerField(
        "retired pages before a replacement", default=60, validators=[MinValueValidator(1)],
        help_text="NVIDIA's guidance for GPUs that retire pages (before Ampere): 60 or more qualify for a "
                  "replacement.")
    gpu_pcie_replays_per_minute = models.FloatField(
        "PCIe replays above (per minute)", default=8.0, validators=[MinValueValidator(0)],
        help_text="The replay counter's growth between two cycles (DCGM's default watch is 8 per minute).")
    gpu_nvlink_errors_per_minute = models.FloatField(
        "NVLink errors above (per minute)", default=0.0, validators=[MinValueValidator(0)],
        help_text="Replay and recovery errors of the GPU's active links together, growth between two cycles (CRC "
                  "counters are not judged: they grow on healthy idle links).")
    # --- shared -------------------------------------------------------------------
    restart_cooldown_minutes = models.PositiveIntegerField(
        "restart cool-down (minutes)", default=15, validators=[MinValueValidator(1), MaxValueValidator(DAY // 60)],
        help_text="A rule restarts one engine at most once in this long, whichever rule asks.")
    clear_margin = models.FloatField(
        "clear margin (percentage points)", default=2.0, validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="GPU memory and KV-cache alerts clear only this far below their threshold.")
    clear_seconds = models.PositiveIntegerField(
        "clear for (seconds)", default=60, validators=SECONDS,
        help_text="A condition must stay clear this long before its incident resolves.")

    class Meta:
        verbose_name = verbose_name_plural = "telemetry rules"

    def __str__(self):
        return "Telemetry rules"

    def save(self, *args, **kwargs):
        self.pk = 1  # one row: the admin edits it, the rules read it
        super().save(*args, **kwargs)

    def clean(self):
        errors = {}
        idle, busy = self.imbalance_idle_percent, self.imbalance_busy_percent
        if idle is not None and busy is not None and idle >= busy:
            errors["imbalance_busy_percent"] = (
                f"Busy ({busy:g} %) must be above idle ({idle:g} %), or every GPU would be both.")
        if self.drift_factor is not None and self.drift_factor <= 1:
            errors["drift_factor"] = (
                f"Use a factor above 1 (got {self.drift_factor:g}): at or below 1 an engine as fast as its "
                "baseline would count as degraded.")
        reserved = self._gpu_memory_below_reservations()
        if reserved:
            errors["gpu_memory_percent"] = reserved
        if errors:
            raise ValidationError(errors)

    def _gpu_memory_below_reservations(self) -> str:
        """Why the GPU-memory threshold would be crossed by a healthy engine's reservation ("" if it is not)."""
        if not self.gpu_memory_enabled or self.gpu_memory_percent is None:
            return ""
        engines = [e for e in Engine.objects.filter(enabled=True) if e.gpus]
        engine = max(engines, key=Engine.reservation, default=None)
        if engine is None:
            return ""
        limit = 100 * (engine.reservation() + RESERVATION_MARGIN)
        if self.gpu_memory_percent > limit:
            return ""
        how = (f"gpu_memory_utilization {engine.gpu_memory_utilization:g}" if engine.gpu_memory_utilization
               else "vLLM's default gpu_memory_utilization")
        fix = (f"Use a threshold above {limit:g} %, or lower" if limit < 100 else "Lower")
        return (f"Engine {engine.name} reserves {100 * engine.reservation():g} % of its GPUs ({how}) for as long as "
                f"it runs: at {self.gpu_memory_percent:g} % its GPU would stay raised. {fix} that engine's "
                "gpu_memory_utilization.")

    @classmethod
    def current(cls) -> "TelemetryRules":
        """The rules with the sampling interval (`sample_interval`) in one query."""
        interval = TelemetrySettings.objects.filter(pk=1).values("sample_interval_seconds")[:1]
        rules = cls.objects.annotate(sample_interval=Subquery(interval)).filter(pk=1).first()
        if rules is None:  # the migration creates the row; a deleted one comes back with the defaults
            rules = cls.objects.get_or_create(pk=1)[0]
            rules.sample_interval = None
        rules.sample_interval = rules.sample_interval or TelemetrySettings._meta.get_field(
            "sample_interval_seconds").default
        return rules

    @property
    def max_gap_seconds(self) -> float:
        """A longer silence is "no data": it also breaks every streak of a condition."""
        return self.no_data_intervals * self.sample_interval


class RuleRestart(models.Model):
    """The last restart a rule made of each engine: the cool-down is claimed on this row."""

    engine = models.OneToOneField("inference.Engine", on_delete=models.CASCADE, related_name="rule_restart")
    restarted_at = models.DateTimeField()
    reason = models.CharField(max_length=300)

    class Meta:
        verbose_name = "restart by a rule"
        verbose_name_plural = "restarts by rules"

    def __str__(self):
        return f"{self.engine_id} at {self.restarted_at:%Y-%m-%d %H:%M:%S}"
