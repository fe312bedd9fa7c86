"""The audit trail's page in the admin (glmadmin/audit.py): every change, read-only."""

from django.contrib import admin
from django.contrib.admin.models import LogEntry

from .audit import LogEntryAdmin

admin.site.register(LogEntry, LogEntryAdmin)
