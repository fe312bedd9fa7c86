"""The audit trail (issue 15): who changed what, and when, for engines, thresholds, policies, keys and channels.

Django's admin already writes a LogEntry for every add, change and delete; its change message names only the
changed fields. AuditedAdmin makes the message say what each field was and became ("gpu_memory_utilization 0.9 →
0.8"), records the admin's bulk actions (they write no LogEntry of their own), and record() is the same trail for
what operators change outside the admin (the dashboard's engine buttons). Secrets never reach the trail: a field
or environment variable whose name or value looks like one is shown as "(changed)".

LogEntry rather than a model of our own: the admin's History pages already read it, it needs no migration, and
one table holds both kinds of change.
"""

import json
import re
from collections.abc import Iterable

from django.contrib import admin
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import F, Model, Window
from django.db.models.functions import RowNumber
from django.forms import ModelChoiceField

HIDDEN = "(changed)"
MAX_VALUE = 80  # characters of one value in a message; a long value is cut
# Name parts that mark a secret: API key hashes, passwords, channel secrets, HF_TOKEN, WANDB_API_KEY. A webhook URL
# carries its token (Slack, Telegram, ntfy topics), so URLs count as secrets too.
SECRET_PARTS = {"secret", "password", "passwd", "pass", "hash", "token", "key", "apikey", "credential",
                "credentials", "auth", "private", "cookie", "session", "url", "dsn"}
# A value that looks like a credential whatever its name: a long run without spaces mixing letters and digits.
TOKEN_VALUE = re.compile(r"(?=[^\s]*[A-Za-z])(?=[^\s]*\d)[A-Za-z0-9_\-+=.:]{20,}")


def is_secret_name(name: str) -> bool:
    return any(part in SECRET_PARTS for part in re.split(r"[_\W]+", str(name).lower()))


def looks_secret(name: str, value) -> bool:
    return is_secret_name(name) or (isinstance(value, str) and TOKEN_VALUE.fullmatch(value) is not None)


def show(value) -> str:
    """A value as the trail prints it: numbers bare, text quoted (so an empty one shows), nothing as "–"."""
    if value is None:
        return "–"
    if isinstance(value, Model):
        text = str(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (list, tuple, set, dict)):
        text = json.dumps([str(v) if isinstance(v, Model) else v for v in value] if not isinstance(value, dict)
                          else value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def describe_change(name: str, old, new) -> list[str]:
    """'name old → new', or one line per changed key of a mapping (an engine's environment), secrets hidden."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            if is_secret_name(name) or looks_secret(key, before) or looks_secret(key, after):
                lines.append(f"{name}[{key}] {HIDDEN}")
            else:
                lines.append(f"{name}[{key}] {show(before)} → {show(after)}")
        return lines
    if is_secret_name(name):
        return [f"{name} {HIDDEN}"]
    return [f"{name} {show(old)} → {show(new)}"]


def form_changes(form) -> list[str]:
    """What a saved admin form changed: each changed field with its value before (the form's initial, read
    from the row as it was) and after (the cleaned value)."""
    lines = []
    for name in form.changed_data:
        field = form.fields.get(name)
        old, new = form.initial.get(name, field.initial if field else None), form.cleaned_data.get(name)
        if isinstance(field, ModelChoiceField) and old not in (None, "", []) and not _models(old):
            try:
                old = field.to_python(old)  # the initial of a relation is its key: show the object, as for new
            except Exception:  # noqa: BLE001 -- gone since; the key is still worth showing
                pass
        lines.extend(describe_change(name, old, new))
    return lines


def _models(value) -> bool:
    return isinstance(value, Model) or (isinstance(value, (list, tuple)) and all(isinstance(v, Model) for v in value))


def record(user, obj: Model, message: str, flag: int = CHANGE) -> LogEntry:
    """One entry of the trail for a change made outside the admin's forms (a dashboard button, an admin action)."""
    return record_many(user, [obj], message, flag)[0]


def record_many(user, objects: Iterable[Model], message: str, flag: int = CHANGE) -> list[LogEntry]:
    entries = [LogEntry(user_id=user.pk, content_type=ContentType.objects.get_for_model(obj, for_concrete_model=False),
                        object_id=str(obj.pk), object_repr=str(obj)[:200], action_flag=flag, change_message=message)
               for obj in objects]
    return LogEntry.objects.bulk_create(entries)


def recent(model: type[Model], pks: Iterable, per_object: int = 5) -> dict[str, list[LogEntry]]:
    """The last changes of each of these rows, newest first, in one query (a window per row): for the dashboard."""
    pks = [str(pk) for pk in pks]
    if not pks:
        return {}
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    rows = (LogEntry.objects.filter(content_type=content_type, object_id__in=pks).select_related("user")
            .annotate(rank=Window(RowNumber(), partition_by=[F("object_id")], order_by=[F("action_time").desc(),
                                                                                      F("pk").desc()]))
            .filter(rank__lte=per_object).order_by("object_id", "rank"))
    found: dict[str, list[LogEntry]] = {}
    for entry in rows:
        found.setdefault(entry.object_id, []).append(entry)
    return found


class AuditedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose History says what changed, from what to what, and which records its bulk actions."""

    def construct_change_message(self, request, form, formsets, add=False):
        default = super().construct_change_message(request, form, formsets, add)
        if add:
            return default
        lines = form_changes(form)
        # Inline rows added, changed or deleted: Django's own words for them.
        inlines = [part for part in default if "object" in next(iter(part.values()))]
        if inlines:
            lines.append(LogEntry(change_message=json.dumps(inlines)).get_change_message())
        return ("Changed " + "; ".join(lines) + ".") if lines else "No fields changed."

    def get_actions(self, request):
        actions = super().get_actions(request)
        # delete_selected logs each deletion itself.
        return {key: (func if key == "delete_selected" else _recorded(func, description), name, description)
                for key, (func, name, description) in actions.items()}


def _recorded(func, description):
    def action(modeladmin, request, queryset):
        selected = list(queryset)
        response = func(modeladmin, request, queryset)
        record_many(request.user, selected, f"Action: {description}.")
        return response

    action.short_description = description
    return action


ACTIONS = {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}


class LogEntryAdmin(admin.ModelAdmin):
    """Every change anyone made, newest first: read-only; staff see the models they may view or change."""

    date_hierarchy = "action_time"
    list_display = ("action_time", "user", "content_type", "object_repr", "action", "message")
    # Only the users and models the page shows: the filter lists are part of what staff may see.
    list_filter = (("content_type", admin.RelatedOnlyFieldListFilter), ("user", admin.RelatedOnlyFieldListFilter),
                   "action_flag")
    search_fields = ("object_repr", "change_message", "user__username")
    list_select_related = ("user", "content_type")
    list_per_page = 100

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        entries = super().get_queryset(request)
        if request.user.is_superuser:
            return entries
        # The trail of what one may not even view (users, their passwords' changes) stays with those who may.
        perms = Permission.objects.filter(codename__regex=r"^(view|change)_")
        allowed = {p.content_type_id for p in perms.select_related("content_type")
                   if request.user.has_perm(f"{p.content_type.app_label}.{p.codename}")}
        return entries.filter(content_type_id__in=allowed)

    @admin.display(description="action", ordering="action_flag")
    def action(self, entry):
        return ACTIONS.get(entry.action_flag, entry.action_flag)

    @admin.display(description="what changed")
    def message(self, entry):
        return entry.get_change_message()
