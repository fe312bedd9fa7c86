"""The alerting core moves out of monitoring into this app: the data stays.

The models are taken over in Django's state as they are (SeparateDatabaseAndState,
no table is created), then their tables and the one auto-named index are renamed
to this app's names, their content types move (so permissions, group grants and
admin history follow), and beat rows of the notification tasks get the tasks'
new names. Every step has its reverse. monitoring 0011 drops the models from
monitoring's state.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import alerts.models

MODELS = ["incident", "incidentevent", "notificationchannel", "notification", "deliveryattempt"]
OLD_INDEX = "monitoring__status_2a3d7c_idx"
NEW_INDEX = "alerts_noti_status_f2fa09_idx"
TASKS = {
    "monitoring.tasks.repeat_red_alerts": "alerts.tasks.repeat_red_alerts",
    "monitoring.tasks.redeliver_stalled_notifications": "alerts.tasks.redeliver_stalled_notifications",
    "monitoring.tasks.deliver_notification": "alerts.tasks.deliver_notification",
}


def move_content_types(apps, schema_editor, source="monitoring", target="alerts"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        # A type the target app already has (made by an earlier migrate of this code) holds no grants
        # worth keeping over the moved one's: it goes, so the move never breaks the unique (app, model).
        moving = ContentType.objects.using(db).filter(app_label=source, model=model)
        if moving.exists():
            ContentType.objects.using(db).filter(app_label=target, model=model).delete()
            moving.update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="alerts", target="monitoring")


def rename_tasks(apps, schema_editor, names=TASKS):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    db = schema_editor.connection.alias
    changed = sum(PeriodicTask.objects.using(db).filter(task=old).update(task=new) for old, new in names.items())
    if changed:
        # The marker a running beat polls: it reloads its schedule instead of sending the old names.
        from django.utils import timezone

        PeriodicTasks.objects.using(db).update_or_create(ident=1, defaults={"last_update": timezone.now()})


def rename_tasks_back(apps, schema_editor):
    rename_tasks(apps, schema_editor, names={new: old for old, new in TASKS.items()})


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("monitoring", "0010_telemetry_rules"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotificationChannel',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('kind', models.CharField(choices=[('email', 'Email (SMTP)'), ('webhook', 'Webhook (JSON POST)'), ('slack', 'Slack-compatible webhook'), ('wecom', 'WeCom group robot'), ('dingtalk', 'DingTalk robot')], max_length=20)),
                        ('enabled', models.BooleanField(default=True)),
                        ('recipients', models.TextField(blank=True, help_text='Email: addresses, separated by commas or new lines.')),
                        ('url', models.CharField(blank=True, help_text='Webhook and robots: the http(s) URL to POST to, with its key or token.', max_length=1000, verbose_name='URL')),
                        ('secret', models.CharField(blank=True, help_text="Optional. Webhook: signs each body (header X-Glmadmin-Signature: sha256=HMAC). DingTalk: the robot's signing secret (SEC...).", max_length=200)),
                        ('address_policy', models.CharField(choices=[('public', 'Public addresses only'), ('private', 'Also loopback and private networks (an on-premise server)'), ('any', 'Any address, even link-local and cloud metadata (unsafe)')], default='public', max_length=10, verbose_name='addresses allowed')),
                        ('levels', models.JSONField(default=alerts.models.default_channel_levels, help_text='Levels whose opening or escalation is sent.')),
                        ('incident_kinds', models.JSONField(blank=True, default=list, help_text='Kinds of incident sent; none ticked: all.')),
                        ('repeat_minutes', models.PositiveIntegerField(default=30, help_text='An unacknowledged red incident is sent again this often; 0 never repeats.', verbose_name='repeat red every (minutes)')),
                        ('consecutive_failures', models.PositiveIntegerField(default=0, editable=False)),
                        ('last_success_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('last_failure_at', models.DateTimeField(blank=True, editable=False, null=True)),
                        ('last_error', models.CharField(blank=True, editable=False, max_length=500)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        'db_table': 'monitoring_notificationchannel',
                        'verbose_name': 'notification channel',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='Incident',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('source', models.CharField(help_text='What the incident is about, e.g. disk:/data.', max_length=200)),
                        ('kind', models.CharField(choices=[('disk', 'Disk usage'), ('engine', 'Engine'), ('cleanup', 'Cleanup'), ('gpu', 'GPU'), ('telemetry', 'Telemetry')], max_length=20)),
                        ('title', models.CharField(max_length=200)),
                        ('level', models.CharField(choices=[('yellow', 'Yellow'), ('orange', 'Orange'), ('red', 'Red')], max_length=10)),
                        ('peak_level', models.CharField(choices=[('yellow', 'Yellow'), ('orange', 'Orange'), ('red', 'Red')], max_length=10)),
                        ('value', models.FloatField(blank=True, help_text='The reading at the last transition.', null=True)),
                        ('message', models.CharField(max_length=500)),
                        ('is_test', models.BooleanField(default=False, help_text='Fired by manage.py test_alert.')),
                        ('opened_at', models.DateTimeField()),
                        ('updated_at', models.DateTimeField()),
                        ('resolved_at', models.DateTimeField(blank=True, null=True)),
                        ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                        ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'monitoring_incident',
                        'ordering': ['-opened_at'],
                    },
                ),
                migrations.CreateModel(
                    name='IncidentEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('at', models.DateTimeField()),
                        ('kind', models.CharField(choices=[('opened', 'Opened'), ('escalated', 'Escalated'), ('deescalated', 'De-escalated'), ('resolved', 'Resolved'), ('acknowledged', 'Acknowledged')], max_length=20)),
                        ('level', models.CharField(blank=True, choices=[('yellow', 'Yellow'), ('orange', 'Orange'), ('red', 'Red')], max_length=10)),
                        ('value', models.FloatField(blank=True, null=True)),
                        ('incident', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='alerts.incident')),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'monitoring_incidentevent',
                        'ordering': ['at', 'pk'],
                    },
                ),
                migrations.CreateModel(
                    name='Notification',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.UUIDField(default=uuid.uuid4, editable=False, help_text='Sent with the message (Idempotency-Key, Message-ID) so receivers can drop repeats.', unique=True)),
                        ('reason', models.CharField(choices=[('opened', 'Opened'), ('escalated', 'Escalated'), ('deescalated', 'De-escalated'), ('resolved', 'Resolved'), ('repeat', 'Reminder (red, not acknowledged)'), ('test', 'Channel test')], max_length=20)),
                        ('dedupe_key', models.CharField(max_length=100)),
                        ('level', models.CharField(blank=True, choices=[('yellow', 'Yellow'), ('orange', 'Orange'), ('red', 'Red')], max_length=10)),
                        ('subject', models.CharField(max_length=300)),
                        ('payload', models.JSONField(help_text='The message as planned; every attempt sends exactly this.')),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('sending', 'Sending'), ('sent', 'Sent'), ('failed', 'Failed (gave up)'), ('cancelled', 'Cancelled')], default='pending', max_length=10)),
                        ('attempt_count', models.PositiveSmallIntegerField(default=0)),
                        ('created_at', models.DateTimeField()),
                        ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                        ('claimed_until', models.DateTimeField(blank=True, help_text='While sending: after this the worker is presumed dead.', null=True)),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.CharField(blank=True, max_length=500)),
                        ('event', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='notifications', to='alerts.incidentevent')),
                        ('incident', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='alerts.incident')),
                        ('channel', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='alerts.notificationchannel')),
                    ],
                    options={
                        'db_table': 'monitoring_notification',
                        'ordering': ['-created_at', '-pk'],
                    },
                ),
                migrations.CreateModel(
                    name='DeliveryAttempt',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveSmallIntegerField()),
                        ('started_at', models.DateTimeField()),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('status', models.CharField(choices=[('sending', 'In progress'), ('ok', 'Delivered'), ('failed', 'Failed'), ('interrupted', 'Interrupted (worker stopped)')], default='sending', max_length=12)),
                        ('error', models.CharField(blank=True, max_length=500)),
                        ('notification', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='alerts.notification')),
                    ],
                    options={
                        'db_table': 'monitoring_deliveryattempt',
                        'ordering': ['started_at', 'pk'],
                    },
                ),
                migrations.AddConstraint(
                    model_name='incident',
                    constraint=models.UniqueConstraint(condition=models.Q(('resolved_at__isnull', True)), fields=('source',), name='one_open_per_source'),
                ),
                migrations.AddIndex(
                    model_name='notification',
                    index=models.Index(fields=['status', 'next_attempt_at'], name=OLD_INDEX),
                ),
                migrations.AddConstraint(
                    model_name='notification',
                    constraint=models.UniqueConstraint(fields=('channel', 'dedupe_key'), name='one_notification_per_channel_and_key'),
                ),

            ],
            database_operations=[],
        ),
        *[migrations.AlterModelTable(name=model, table=None) for model in MODELS],
        migrations.RenameIndex(model_name="notification", new_name=NEW_INDEX, old_name=OLD_INDEX),
        migrations.RunPython(move_content_types, move_content_types_back),
        migrations.RunPython(rename_tasks, rename_tasks_back),
    ]
