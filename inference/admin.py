from django.contrib import admin, messages

from . import control
from .models import Engine, EngineEvent
from .models import EngineState as S


class EngineEventInline(admin.TabularInline):
    model = EngineEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "previous", "state", "reason", "pid")
    ordering = ["-at", "-pk"]
    max_num = 0



@admin.register(Engine)
class EngineAdmin(admin.ModelAdmin):
    list_display = ("name", "host", "served_model_name", "port", "gpu_ids", "state", "enabled", "restarts",
                    "last_probe_ms")
    list_filter = ("host", "state", "enabled")
    search_fields = ("name", "served_model_name", "model")
    readonly_fields = ("state", "state_reason", "state_changed_at", "pid", "ready_at", "restarts",
                       "last_probe_at", "last_probe_ms", "restart_generation", "running_generation")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "host", "listen_address", "port")}),
        ("Model", {"fields": ("model", "served_model_name", "gpu_ids", "tensor_parallel_size")}),
        ("vLLM options", {"fields": ("max_model_len", "block_size", "max_num_seqs", "kv_cache_dtype",
                                     "enable_chunked_prefill", "gpu_memory_utilization", "quantization",
                                     "enforce_eager", "extra_args", "env")}),
        ("Supervision", {"fields": ("shutdown_timeout", "startup_timeout", "daily_restart_at")}),
        ("Now", {"fields": readonly_fields}),
    )
    inlines = [EngineEventInline]
    actions = ["restart_selected", "stop_selected", "start_selected"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, and only when stopped (below)
        return actions

    def has_delete_permission(self, request, obj=None):
        # Deleting the row of a running engine would orphan its process.
        if obj is not None and obj.state not in (S.STOPPED, S.FAILED):
            return False
        return super().has_delete_permission(request, obj)

    def _act(self, request, queryset, action, verb):
        for engine in queryset:
            action(engine)
            control.kick(engine)
        self.message_user(request, f"{verb} {queryset.count()} engine(s).", messages.SUCCESS)

    @admin.action(description="Restart selected engines", permissions=["change"])
    def restart_selected(self, request, queryset):
        self._act(request, queryset, control.request_restart, "Restart requested for")

    @admin.action(description="Stop selected engines", permissions=["change"])
    def stop_selected(self, request, queryset):
        self._act(request, queryset, control.request_stop, "Stop requested for")

    @admin.action(description="Start selected engines", permissions=["change"])
    def start_selected(self, request, queryset):
        self._act(request, queryset, control.request_start, "Start requested for")
