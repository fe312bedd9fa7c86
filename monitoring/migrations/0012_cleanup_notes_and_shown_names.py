"""Cleanup runs note what they passed over; names recorded before names were shown safely are shown now.

A run recorded a file name as the kernel gave it: a name that is not UTF-8 became a lone surrogate,
which made every page showing that run fail to encode (a 500 for every user until newer runs pushed
it off the dashboard). Those names are rewritten here as safewalk.shown() writes new ones.
"""

from django.db import migrations, models

import monitoring.cleanup.policy
from glmadmin.lib.safewalk import shown


def show_recorded_names(apps, schema_editor):
    CleanupRun = apps.get_model("monitoring", "CleanupRun")
    for run in CleanupRun.objects.only("pk", "removed", "errors").iterator():
        removed = [[shown(str(name)), size] for name, size in run.removed]
        errors = [[shown(str(name)), shown(str(error))] for name, error in run.errors]
        if removed != run.removed or errors != run.errors:
            CleanupRun.objects.filter(pk=run.pk).update(removed=removed, errors=errors)


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0011_alerts_moved_out'),
    ]

    operations = [
        migrations.AddField(
            model_name='cleanuprun',
            name='notes',
            field=models.JSONField(blank=True, default=list, help_text='[what, why] of what the run passed over on purpose: mount points, the processes the open-file check could not read.'),
        ),
        migrations.AlterField(
            model_name='logpolicy',
            name='patterns',
            field=models.TextField(help_text='Absolute glob patterns of the log files, one per line, e.g. /var/log/glmadmin/*.log; only in the directories cleanup may act in (GLMADMIN_CLEANUP_ALLOWED_ROOTS).', validators=[monitoring.cleanup.policy.validate_log_patterns]),
        ),
        migrations.RunPython(show_recorded_names, migrations.RunPython.noop),
    ]
