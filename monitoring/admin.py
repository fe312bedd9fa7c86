from django.contrib import admin

from .incidents import acknowledge
from .models import Incident, IncidentEvent, WatchedFilesystem


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
