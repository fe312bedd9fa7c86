from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.urls import reverse

from .cleanup.logs import write_config as write_log_config
from .incidents import acknowledge
from .models import (
    CleanupPolicy,
    CleanupRun,
    DeliveryAttempt,
    Incident,
    IncidentEvent,
    LogPolicy,
    Notification,
    NotificationChannel,
    TelemetrySettings,
    WatchedFilesystem,
)
from .notifications import delivery, planner
from .notifications.forms import ChannelForm
from .templatetags.monitoring_tags import gib


@admin.register(WatchedFilesystem)
class WatchedFilesystemAdmin(admin.ModelAdmin):
    list_display = ("label", "path", "enabled", "yellow_percent", "orange_percent", "red_percent", "clear_margin",
                    "last_percent", "last_checked_at")
    list_filter = ("enabled",)
    readonly_fields = ("last_percent", "last_checked_at", "last_error")
    fieldsets = (
        (None, {"fields": ("label", "path", "enabled")}),
        ("Thresholds (percent of the filesystem in use)", {
            "description": "Each level is entered at its threshold. Enabled levels must rise from yellow to red.",
            "fields": (("yellow_enabled", "yellow_percent"), ("orange_enabled", "orange_percent"),
                       ("red_enabled", "red_percent"), "clear_margin"),
        }),
        ("Last check", {"fields": ("last_percent", "last_checked_at", "last_error")}),
    )


class IncidentEventInline(admin.TabularInline):
    model = IncidentEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "kind", "level", "value", "user")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("title", "level", "peak_level", "opened_at", "resolved_at", "acknowledged_by", "is_test")
    list_filter = ("level", "kind", "is_test", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "source", "message")
    date_hierarchy = "opened_at"
    inlines = [IncidentEventInline]
    actions = ["acknowledge_selected"]
    # History is written by the checks, not by hand.
    readonly_fields = ("source", "kind", "title", "level", "peak_level", "value", "message", "is_test", "opened_at",
                       "updated_at", "resolved_at", "acknowledged_at", "acknowledged_by")

    def has_add_permission(self, request):
        return False

    @admin.action(description="Acknowledge selected incidents", permissions=["change"])
    def acknowledge_selected(self, request, queryset):
        count = sum(acknowledge(incident, request.user) for incident in queryset)
        self.message_user(request, f"Acknowledged {count} incident(s).")


# --- notifications ------------------------------------------------------------

@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "enabled", "receives", "repeat_minutes", "health", "last_success_at")
    list_filter = ("kind", "enabled")
    actions = ["send_test"]
    readonly_fields = ("consecutive_failures", "last_success_at", "last_failure_at", "last_error")
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled")}),
        ("Where to", {
            "description": "Email uses the SMTP server of the settings (GLMADMIN_SMTP_*) and needs recipients; "
                           "the other kinds need a URL.",
            "fields": ("recipients", "url", "secret", "address_policy"),
        }),
        ("What", {"fields": ("levels", "incident_kinds", "repeat_minutes")}),
        ("Health", {"fields": ("consecutive_failures", "last_success_at", "last_failure_at", "last_error")}),
    )

    @admin.display(description="receives")
    def receives(self, channel):
        kinds = ", ".join(channel.incident_kinds) if channel.incident_kinds else "all kinds"
        return f"{', '.join(channel.levels)} ({kinds})"

    @admin.display(description="healthy", boolean=True)
    def health(self, channel):
        return channel.is_healthy

    @admin.action(description="Send a test message now", permissions=["change"])
    def send_test(self, request, queryset):
        # Sent here rather than queued: the person who clicked wants the answer, and a timeout bounds the wait.
        for channel in queryset:
            outcome = delivery.deliver(planner.plan_channel_test(channel).pk)
            ok = outcome.status == "sent"
            self.message_user(request, f"Test to {channel.name}: {outcome}", messages.SUCCESS if ok else messages.ERROR)


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = readonly_fields = ("number", "started_at", "finished_at", "status", "error")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "reason", "subject", "status", "attempt_count", "sent_at", "last_error")
    list_filter = ("status", "reason", "channel")
    search_fields = ("subject",)
    date_hierarchy = "created_at"
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]
    readonly_fields = ("key", "channel", "incident", "event", "reason", "dedupe_key", "level", "subject", "payload",
                       "status", "attempt_count", "created_at", "next_attempt_at", "claimed_until", "sent_at",
                       "last_error")

    def has_add_permission(self, request):
        return False

    @admin.action(description="Try again now", permissions=["change"])
    def retry_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = delivery.retry_now(Notification.objects.filter(pk__in=ids))
        planner.enqueue(ids)
        self.message_user(request, f"Queued {count} notification(s) for another try.")


class NotificationInline(admin.TabularInline):
    """What was sent about an incident, on the incident's page."""

    model = Notification
    extra = 0
    can_delete = False
    show_change_link = True
    fields = readonly_fields = ("created_at", "channel", "reason", "status", "attempt_count", "sent_at", "last_error")

    def has_add_permission(self, request, obj=None):
        return False


IncidentAdmin.inlines = [*IncidentAdmin.inlines, NotificationInline]


# --- cleanup ------------------------------------------------------------------

@admin.register(CleanupPolicy)
class CleanupPolicyAdmin(admin.ModelAdmin):
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
        return gib(policy.last_size_bytes)


@admin.register(LogPolicy)
class LogPolicyAdmin(admin.ModelAdmin):
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
        return gib(run.bytes_freed)


# --- telemetry -----------------------------------------------------------------------

@admin.register(TelemetrySettings)
class TelemetrySettingsAdmin(admin.ModelAdmin):
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
from .telemetry import rule_admin  # noqa: E402,F401
