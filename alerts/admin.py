from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.utils import timezone

from glmadmin.audit import AuditedAdmin

from . import inhibition, quiet, silences
from .incidents import acknowledge
from .models import (
    DeliveryAttempt,
    Incident,
    IncidentEvent,
    Notification,
    NotificationChannel,
    NotificationItem,
    Silence,
)
from .notifications import delivery, planner
from .notifications.forms import ChannelForm


class IncidentEventInline(admin.TabularInline):
    model = IncidentEvent
    fk_name = "incident"
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "kind", "level", "value", "user", "note", "silenced_by", "inhibited_by",
                                "released")

    def has_add_permission(self, request, obj=None):
        return False


class _QuietAwareChangeList(ChangeList):
    """The incident list: every row asks why it is quiet, so the silences and the inhibiting incidents are read
    once per page and handed to each row (two queries, not two per row)."""

    def get_results(self, request):
        super().get_results(request)
        shared = quiet.reasons()
        for incident in self.result_list:
            incident.quiet_reasons = shared


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("title", "host", "level", "peak_level", "opened_at", "resolved_at", "acknowledged_by", "held",
                    "is_test")
    list_filter = ("level", "kind", "host", "is_test", ("resolved_at", admin.EmptyFieldListFilter))
    search_fields = ("title", "source", "message")
    date_hierarchy = "opened_at"
    inlines = [IncidentEventInline]
    actions = ["acknowledge_selected"]
    # History is written by the checks, not by hand.
    readonly_fields = ("source", "kind", "host", "title", "level", "peak_level", "value", "message", "is_test",
                       "opened_at", "updated_at", "resolved_at", "acknowledged_at", "acknowledged_by")

    def get_changelist(self, request, **kwargs):
        return _QuietAwareChangeList

    @admin.display(description="notified")
    def held(self, incident):
        """Why an open incident notifies nobody now: a silence, or a red disk on its host (its likely cause)."""
        if not incident.is_open:
            return ""
        reasons = getattr(incident, "quiet_reasons", None) or quiet.reasons()
        silence = silences.covering(incident, among=reasons["silences"])
        if silence is not None:
            return f"silenced until {timezone.localtime(silence.ends_at):%H:%M}"
        cause = inhibition.cause_of(incident, among=reasons["causes"])
        return f"inhibited by {cause.title}" if cause is not None else "yes"

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # History is the record of what happened; an open one is closed with "Resolve" and a note instead.
        return False

    @admin.action(description="Acknowledge selected incidents", permissions=["change"])
    def acknowledge_selected(self, request, queryset):
        count = sum(acknowledge(incident, request.user) for incident in queryset)
        self.message_user(request, f"Acknowledged {count} incident(s).")


# --- notifications ------------------------------------------------------------

@admin.register(NotificationChannel)
class NotificationChannelAdmin(AuditedAdmin):
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
        ("What", {"fields": ("levels", "incident_kinds", "repeat_minutes", "escalate_after_minutes")}),
        ("Grouping", {
            "description": "Changes of one host's incidents that come close together (a full disk and the engines "
                           "it stops) are sent as one message listing each.",
            "fields": ("group_wait_seconds", "group_interval_minutes"),
        }),
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


class NotificationItemInline(admin.TabularInline):
    """The changes a grouped message lists."""

    model = NotificationItem
    extra = 0
    can_delete = False
    fields = readonly_fields = ("added_at", "incident", "reason", "level", "__str__")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("created_at", "channel", "reason", "subject", "status", "attempt_count", "sent_at", "last_error")
    list_filter = ("status", "reason", "channel")
    search_fields = ("subject",)
    date_hierarchy = "created_at"
    inlines = [NotificationItemInline, DeliveryAttemptInline]
    actions = ["retry_now"]
    readonly_fields = ("key", "channel", "incident", "event", "reason", "group", "dedupe_key", "level", "subject",
                       "payload", "status", "attempt_count", "created_at", "next_attempt_at", "claimed_until",
                       "sent_at", "last_error")

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


# --- silences -------------------------------------------------------------------

class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active now"), ("later", "Not started"), ("ended", "Ended")]

    def queryset(self, request, queryset):
        now = timezone.now()
        active = [silence.pk for silence in silences.active(now)]
        return {"active": queryset.filter(pk__in=active), "later": queryset.filter(starts_at__gt=now),
                "ended": queryset.filter(ends_at__lte=now, daily=False)}.get(self.value(), queryset)


@admin.register(Silence)
class SilenceAdmin(AuditedAdmin):
    list_display = ("source", "kind", "level", "starts_at", "ends_at", "daily", "active", "reason", "created_by")
    list_filter = (ActiveFilter, "kind", "level", "daily")
    search_fields = ("source", "reason")
    readonly_fields = ("created_by", "created_at")
    actions = ["end_now"]
    fieldsets = (
        ("What", {"description": "Incidents matching every field set here notify nobody while the silence is "
                                 "active; they are still recorded and shown (marked silenced). Once it ends, an "
                                 "incident still open is sent once.",
                  "fields": ("source", "kind", "level")}),
        ("When and why", {"fields": ("starts_at", "ends_at", "daily", "reason", "created_by", "created_at")}),
    )

    @admin.display(boolean=True, description="active")
    def active(self, silence):
        return silence.is_active()

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="End the selected silences now", permissions=["change"])
    def end_now(self, request, queryset):
        active = [silence.pk for silence in silences.active()]
        ended = queryset.filter(pk__in=active).update(ends_at=timezone.now(), daily=False)
        self.message_user(request, f"Ended {ended} silence(s); what they held back is sent within a minute.")
