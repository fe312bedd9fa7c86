"""Admin of the telemetry rules: one page with every rule (imported by monitoring.admin)."""

from django.contrib import admin
from django.shortcuts import redirect
from django.urls import reverse

from glmadmin.audit import AuditedAdmin

from ...models import RuleRestart, TelemetryRules


def _rule(title: str, description: str, *fields) -> tuple:
    return (title, {"description": description, "fields": fields})


@admin.register(TelemetryRules)
class TelemetryRulesAdmin(AuditedAdmin):
    """Read by the next sampling cycle: a change applies without a restart."""

    fieldsets = (
        _rule("GPU memory (orange)", "A GPU's memory in use above the threshold.",
              "gpu_memory_enabled", ("gpu_memory_percent", "gpu_memory_seconds"), "gpu_memory_restart"),
        _rule("KV cache (yellow)", "An engine's KV-cache usage above the threshold.",
              "kv_cache_enabled", ("kv_cache_percent", "kv_cache_seconds")),
        _rule("Foreign processes (yellow)", "A process outside the engines holding memory on an engine's GPU.",
              "foreign_enabled", ("foreign_gib", "foreign_seconds")),
        _rule("Tensor-parallel imbalance (yellow)", "One of an engine's GPUs idle while its others are busy.",
              "imbalance_enabled", ("imbalance_idle_percent", "imbalance_busy_percent", "imbalance_seconds")),
        _rule("Stuck engine (orange)", "Requests in flight and no token generated: the engine counts as unhealthy.",
              "stuck_enabled", "stuck_seconds", "stuck_restart"),
        _rule("Time to first token (yellow)", "TTFT p95 above a fixed threshold, and above a multiple of the "
              "engine's own first hour after it became ready.",
              "ttft_enabled", ("ttft_p95_seconds", "ttft_seconds"),
              "drift_enabled", ("drift_factor", "drift_baseline_minutes", "drift_seconds"), "drift_restart"),
        _rule("Missing data", "Silence is raised, never taken for an all-clear. A machine without NVIDIA GPUs "
              "raises nothing about GPUs.",
              "no_data_enabled", "no_data_intervals", ("metrics_missing_enabled", "metrics_missing_cycles"),
              ("nvml_enabled", "nvml_cycles")),
        _rule("GPU health (orange when failing, yellow when degraded)",
              "Xid events, uncorrectable ECC errors, row remapping, retired pages, hardware clock slowdown, the "
              "PCIe link and its replays, NVLink errors and a GPU NVML no longer answers for; each incident says "
              "what to do.",
              "gpu_health_enabled", "gpu_health_stop", "gpu_xid_restart", ("gpu_xid_hold_minutes",
                                                                              "gpu_throttle_seconds"),
              "gpu_retired_pages_limit", ("gpu_pcie_replays_per_minute", "gpu_nvlink_errors_per_minute")),
        _rule("Restarts and clearing", "", "restart_cooldown_minutes", "clear_margin", "clear_seconds"),
    )

    def has_add_permission(self, request):
        return not TelemetryRules.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # The list of one row is a detour: open the row itself.
        rules = TelemetryRules.objects.get_or_create(pk=1)[0]
        return redirect(reverse("admin:monitoring_telemetryrules_change", args=[rules.pk]))


@admin.register(RuleRestart)
class RuleRestartAdmin(admin.ModelAdmin):
    list_display = ("engine", "restarted_at", "reason")
    readonly_fields = ("engine", "restarted_at", "reason")

    # Written by the rules: the record of what they did, and the cool-down's clock.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
