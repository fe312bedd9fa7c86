from django.conf import settings
from django.db import migrations, models

KINDS = [("disk", "Disk usage"), ("engine", "Engine"), ("cleanup", "Cleanup"), ("gpu", "GPU"),
         ("telemetry", "Telemetry"), ("worker", "Background worker"), ("check", "Check stalled"),
         ("monitoring", "Monitoring stalled")]


def engine_incidents_on_their_hosts(apps, schema_editor):
    """Incidents before hosts were recorded: an engine's on the host named in its source
    (engine:HOST:NAME), the rest on this one."""
    incident = apps.get_model("alerts", "Incident")
    for row in incident.objects.filter(kind="engine", source__startswith="engine:").only("source"):
        parts = row.source.split(":", 2)
        if len(parts) == 3:
            incident.objects.filter(pk=row.pk).update(host=parts[1])
    incident.objects.filter(host="").update(host=settings.GLMADMIN_HOST_NAME)


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0006_maintenance_windows"),
    ]

    operations = [
        migrations.AddField(
            model_name="incident",
            name="host",
            field=models.CharField(blank=True, db_index=True, help_text="The glmadmin host the trouble is on (GLMADMIN_HOST_NAME, an engine's host): inhibition and grouping act per host.", max_length=100),
        ),
        migrations.AlterField(
            model_name="incident",
            name="kind",
            field=models.CharField(choices=KINDS, max_length=20),
        ),
        migrations.AlterField(
            model_name="silence",
            name="kind",
            field=models.CharField(blank=True, choices=KINDS, help_text="Empty: any kind.", max_length=20),
        ),
        migrations.RunPython(engine_incidents_on_their_hosts, migrations.RunPython.noop),
    ]
