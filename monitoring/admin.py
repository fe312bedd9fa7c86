from django.contrib import admin
from django.db import transaction
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from glmadmin.audit import AuditedAdmin

from .cleanup.logs import write_config as write_log_config
from .models import CleanupPolicy, CleanupRun, LogPolicy, TelemetrySettings, WatchedFilesystem


def percent(value: float | None, digits: int = 1) -> str | None:
    """A reading as people read it (32.574274765122794 -> "32.6 %", 85.0 -> "85 %"); None stays the admin's
    empty value."""
    if value is None:
        return None
    return f"{round(value, digits):g} %"


@admin.register(WatchedFilesystem)
class WatchedFilesystemAdmin(AuditedAdmin):
    list_display = ("label", "path", "host", "enabled", "yellow_at", "orange_at", "red_at", "clears_below_by",
                    "used", "last_checked_at")
    list_filter = ("enabled", "host")
    readonly_fields = ("last_percent", "last_checked_at", "last_error", "mount_point")
    fieldsets = (
        (None, {"fields": ("label", "path", "host", "enabled")}),
        ("Thresholds (percent of the filesystem in use)", {
            "description": "Each level is entered at its threshold once readings have stayed at or above it for "
                           "its duration (0 s: at once; a shorter spike opens nothing and notifies nobody; the "
                           "dashboard shows what is pending). Enabled levels must rise from yellow to red.",
            "fields": (("yellow_enabled", "yellow_percent", "yellow_for_seconds"),
                       ("orange_enabled", "orange_percent", "orange_for_seconds"),
                       ("red_enabled", "red_percent", "red_for_seconds"), "clear_margin"),
        }),
        ("Last check", {"fields": ("last_percent", "last_checked_at", "last_error", "mount_point")}),
    )

    @admin.display(description="yellow at", ordering="yellow_percent")
    def yellow_at(self, fs):
        return percent(fs.yellow_percent, 2)

    @admin.display(description="orange at", ordering="orange_percent")
    def orange_at(self, fs):
        return percent(fs.orange_percent, 2)

    @admin.display(description="red at", ordering="red_percent")
    def red_at(self, fs):
        return percent(fs.red_percent, 2)

    @admin.display(description="clear margin", ordering="clear_margin")
    def clears_below_by(self, fs):
        return f"{round(fs.clear_margin, 2):g} points"

    @admin.display(description="used", ordering="last_percent")
    def used(self, fs):
        return percent(fs.last_percent)


# --- cleanup ------------------------------------------------------------------

@admin.register(CleanupPolicy)
class CleanupPolicyAdmin(AuditedAdmin):
    list_display = ("name", "root", "enabled", "engine_cache", "max_size", "min_age_hours", "last_size", "last_size_at")
    list_filter = ("enabled", "engine_cache")
    readonly_fields = ("last_size_bytes", "last_size_at")
    fieldsets = (
        (None, {"fields": ("name", "root", "enabled", "engine_cache")}),
        ("What goes", {
            "description": "Read at every run: changes apply to the next run without a restart. Files open or "
                           "mapped by any process, and directories of running engines, are never removed.",
            "fields": ("max_size", "min_age_hours", "include", "exclude", "log_level"),
        }),
        ("Last measured", {"fields": ("last_size_bytes", "last_size_at")}),
    )

    @admin.display(description="size")
    def last_size(self, policy):
        # None (not measured yet) shows as the admin's empty value, not as "0 bytes"
        return None if policy.last_size_bytes is None else filesizeformat(policy.last_size_bytes)


@admin.register(LogPolicy)
class LogPolicyAdmin(AuditedAdmin):
    list_display = ("name", "enabled", "max_file_size", "keep", "compress")
    list_filter = ("enabled",)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        transaction.on_commit(write_log_config)  # running log writers pick the change up within seconds

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        transaction.on_commit(write_log_config)


@admin.register(CleanupRun)
class CleanupRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "policy_name", "kind", "trigger", "dry_run", "status", "files_scanned",
                    "files_removed", "freed", "error_count")
    list_filter = ("kind", "trigger", "dry_run", "status")
    date_hierarchy = "started_at"
    readonly_fields = [f.name for f in CleanupRun._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="freed")
    def freed(self, run):
        return filesizeformat(run.bytes_freed)


# --- telemetry -----------------------------------------------------------------------

@admin.register(TelemetrySettings)
class TelemetrySettingsAdmin(AuditedAdmin):
    """One row, read by every run: a change applies to the next sample without a restart."""

    fieldsets = ((None, {
        "description": "Raw samples feed the last-hour charts and the rules; 1-minute averages the longer history.",
        "fields": ("sample_interval_seconds", "raw_retention_hours", "minute_retention_days"),
    }),)

    def has_add_permission(self, request):
        return not TelemetrySettings.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        # The list of one row is a detour: open the row itself.
        settings_row = TelemetrySettings.load()
        return redirect(reverse("admin:monitoring_telemetrysettings_change", args=[settings_row.pk]))


# The telemetry rules' admin lives beside the rules.
from .telemetry.rules import admin as rules_admin  # noqa: E402,F401
