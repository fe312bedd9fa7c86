"""The audit trail's page in the admin (glmadmin/audit.py): every change, read-only. And beat's schedules, whose
"last run" says how fresh it is."""

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from .audit import LogEntryAdmin

admin.site.register(LogEntry, LogEntryAdmin)


class ScheduleAdmin(PeriodicTaskAdmin):
    # Beat keeps each task's last run in memory and writes it to the row every 3 minutes (celery's
    # Scheduler.sync_every): a task due every 10 s showed "–" or a time minutes old, read as "never runs".
    list_display = tuple("last_saved_run" if f == "last_run_at" else f for f in PeriodicTaskAdmin.list_display)

    @admin.display(description="last run (beat saves it every 3 min)", ordering="last_run_at")
    def last_saved_run(self, task):
        return task.last_run_at or "not saved yet"


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, ScheduleAdmin)
