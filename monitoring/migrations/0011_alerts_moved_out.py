"""The alerting core now lives in the alerts app (alerts 0001 took its tables over): monitoring's
state forgets those models, its cleanup runs point at alerts.Incident (the same table), and the
telemetry watchdog's beat row gets the task's new name."""

import django.db.models.deletion
from django.db import migrations, models

TASKS = {"monitoring.telemetry.rule_tasks.watch_telemetry_flow": "monitoring.tasks.watch_telemetry_flow"}


def rename_tasks(apps, schema_editor, names=TASKS):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    db = schema_editor.connection.alias
    changed = sum(PeriodicTask.objects.using(db).filter(task=old).update(task=new) for old, new in names.items())
    if changed:
        from django.utils import timezone

        PeriodicTasks.objects.using(db).update_or_create(ident=1, defaults={"last_update": timezone.now()})


def rename_tasks_back(apps, schema_editor):
    rename_tasks(apps, schema_editor, names={new: old for old, new in TASKS.items()})


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0001_initial"),
        ("monitoring", "0010_telemetry_rules"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='incident',
                    name='acknowledged_by',
                ),
                migrations.RemoveField(
                    model_name='incidentevent',
                    name='incident',
                ),
                migrations.RemoveField(
                    model_name='notification',
                    name='incident',
                ),
                migrations.AlterField(
                    model_name='cleanuprun',
                    name='incident',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='cleanup_runs', to='alerts.incident'),
                ),
                migrations.RemoveField(
                    model_name='incidentevent',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='notification',
                    name='event',
                ),
                migrations.RemoveField(
                    model_name='notification',
                    name='channel',
                ),
                migrations.DeleteModel(
                    name='DeliveryAttempt',
                ),
                migrations.DeleteModel(
                    name='Incident',
                ),
                migrations.DeleteModel(
                    name='IncidentEvent',
                ),
                migrations.DeleteModel(
                    name='Notification',
                ),
                migrations.DeleteModel(
                    name='NotificationChannel',
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_tasks, rename_tasks_back),
    ]
