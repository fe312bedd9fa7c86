from datetime import UTC, datetime

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime

from glmadmin import audit
from glmadmin.audit import AuditedAdmin

from . import control, options
from .gateway import keys, limits
from .models import ApiKey, Engine, EngineEvent
from .models import EngineState as S


class EngineEventInline(admin.TabularInline):
    model = EngineEvent
    extra = 0
    can_delete = False
    fields = readonly_fields = ("at", "previous", "state", "reason", "pid")
    ordering = ["-at", "-pk"]
    max_num = 0



# What only a superuser may change: these decide what code an engine runs and what it can reach (the model
# directory or hub id, its environment, where it listens, which host runs it). Staff tune the rest, and start,
# stop and restart engines. Soft restarts turn on vLLM's development endpoints (/sleep, /wake_up and more, on the
# engine's own address): a superuser's choice too. So are media: a multimodal engine fetches URLs from its host, and
# its allowed media domains say which hosts (gateway/media.py).
SUPERUSER_FIELDS = ("model", "env", "listen_address", "host", "soft_restart", "multimodal", "allowed_media_domains")
SUPERUSER_NOTE = ("Only a superuser can change these: they decide what code the engine runs and what it can "
                  "reach. Extra arguments that can do either need a superuser too.")


RESTART_NOTE = ("A running engine keeps running as it was started: a change to what it runs with (model, served "
               "name, address, port, GPUs, vLLM options, extra arguments, environment) applies when it restarts.")


class EngineForm(forms.ModelForm):
    superuser = False  # set per request by EngineAdmin.get_form

    def clean_extra_args(self):
        value = self.cleaned_data["extra_args"]
        if not self.superuser:
            had = self.instance.extra_args if self.instance.pk else []
            added = options.superuser_arguments_added(had, value)
            if added:
                raise ValidationError([f"{flag} needs a superuser: it can run code, read files or reach the network."
                                       for flag in added])
        return value

    def clean(self):
        cleaned = super().clean()
        if not self.superuser:
            for name in SUPERUSER_FIELDS:
                self._refuse_change(name)
        return cleaned

    def _refuse_change(self, name: str) -> None:
        # These fields are read-only for staff, so the admin ignores them in a POST; one that was sent changed
        # anyway (a stale page, a script) gets a clear refusal rather than a silent no-op.
        if name not in self.data:
            return
        field = Engine._meta.get_field(name)
        try:
            changed = field.formfield().clean(self.data[name]) != field.value_from_object(self.instance)
        except ValidationError:
            changed = True
        if changed:
            self.add_error(None, f"{field.verbose_name.capitalize()}: only a superuser can change this.")


@admin.register(Engine)
class EngineAdmin(AuditedAdmin):
    form = EngineForm
    list_display = ("name", "host", "served_model_name", "port", "gpu_ids", "state", "enabled", "restarts",
                    "last_probe_ms")
    list_filter = ("host", "state", "enabled")
    search_fields = ("name", "served_model_name", "model")
    readonly_fields = ("state", "restart_to_apply", "state_reason", "state_changed_at", "pid", "ready_at", "restarts",
                       "soft_restarts", "last_soft_restart_seconds", "last_probe_at", "last_probe_ms")
    fieldsets = (
        (None, {"fields": ("name", "enabled", "port", "served_model_name", "gpu_ids", "tensor_parallel_size"),
                "description": RESTART_NOTE}),
        ("What runs, and what it can reach", {"fields": SUPERUSER_FIELDS, "description": SUPERUSER_NOTE}),
        ("vLLM options", {"fields": ("max_model_len", "block_size", "max_num_seqs", "kv_cache_dtype",
                                     "enable_chunked_prefill", "gpu_memory_utilization", "quantization",
                                     "enforce_eager", "extra_args")}),
        ("Supervision", {"fields": ("shutdown_timeout", "startup_timeout", "daily_restart_at")}),
        ("Now", {"fields": readonly_fields}),
    )
    inlines = [EngineEventInline]
    actions = ["restart_selected", "stop_selected", "start_selected"]

    def has_add_permission(self, request):
        return request.user.is_superuser and super().has_add_permission(request)  # a new engine names a model

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if request.user.is_superuser else (*fields, *SUPERUSER_FIELDS)

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)  # a new class per call: the attribute is this request's
        form.superuser = request.user.is_superuser
        return form

    @admin.display(description="Restart to apply")
    def restart_to_apply(self, obj):
        return "; ".join(obj.pending_restart()) or "–"

    def save_model(self, request, obj, form, change):
        if change:
            # Only the desired state: the supervisor writes the observed one (state, pid, what runs) at any
            # moment, and what this request read of it a moment ago must not be written back over it.
            obj.save(update_fields=[f.name for f in Engine._meta.concrete_fields if f.editable and not f.primary_key])
        else:
            super().save_model(request, obj, form, change)
        if change and "_saveandrestart" in request.POST:
            control.request_restart(obj)
            control.kick(obj)
            audit.record(request.user, obj, "Restart requested with the save (Save and restart).")
            others = Engine.objects.filter(served_model_name=obj.served_model_name, state=S.READY).exclude(pk=obj.pk)
            serving = "its model's other ready engines serve meanwhile" if others.exists() else (
                "its model is not served until it is ready again")
            self.message_user(request, f"{obj.name} restarts now (drain, stop, start): {serving}.", messages.SUCCESS)
        elif pending := obj.pending_restart():
            self.message_user(request, f"{obj.name} runs as it was started until it restarts (Save and restart, or "
                                       f"Restart): {'; '.join(pending)}.", messages.WARNING)

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


USAGE_NOTE = ("Usage is counted by the gateway in Redis as each request ends (tokens as the engine reports them), "
              "since the key was made or Redis last lost its data.")


@admin.register(ApiKey)
class ApiKeyAdmin(AuditedAdmin):
    list_display = ("name", "prefix", "owner", "requests_per_minute", "max_concurrent", "tokens_per_minute",
                    "requests", "tokens", "last_used", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "owner__username")
    fieldsets = (
        (None, {"fields": ("name", "owner", "prefix", "created_at", "revoked_at")}),
        ("Limits", {"fields": ("requests_per_minute", "max_concurrent", "tokens_per_minute")}),
        ("Usage", {"fields": ("requests", "tokens", "last_used"), "description": USAGE_NOTE}),
    )
    readonly_fields = ("prefix", "created_at", "revoked_at", "requests", "tokens", "last_used")
    actions = ["revoke_selected"]

    def get_fieldsets(self, request, obj=None):
        return self.fieldsets if obj is not None else self.fieldsets[:2]  # a new key has no usage yet

    @staticmethod
    def _usage(obj) -> dict:
        # Read once per row (the list shows three columns of it), kept on the row object of this request.
        if not hasattr(obj, "_gateway_usage"):
            obj._gateway_usage = limits.usage(obj.key_hash) if obj.key_hash else {}
        return obj._gateway_usage

    @admin.display(description="requests")
    def requests(self, obj):
        return f"{self._usage(obj).get('requests', 0):,}"

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, obj):
        usage = self._usage(obj)
        prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
        return f"{prompt + completion:,} ({prompt:,} + {completion:,})"

    @admin.display(description="last used")
    def last_used(self, obj):
        at = self._usage(obj).get("last_used")
        return date_format(localtime(datetime.fromtimestamp(at, UTC)), "DATETIME_FORMAT") if at else "never"

    def save_model(self, request, obj, form, change):
        plain = None if change else obj.new_secret()
        super().save_model(request, obj, form, change)
        if plain:
            # Only the hash is stored: this message is the one time anyone sees the key.
            self.message_user(request, f"The new API key for {obj.name} is {plain} — copy it now: "
                                       "it is not stored and cannot be shown again.", messages.SUCCESS)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        keys.publish()  # update() sends no signals; a revoked key must stop working now
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
