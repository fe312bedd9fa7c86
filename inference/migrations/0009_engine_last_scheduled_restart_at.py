from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0008_engine_media'),
    ]

    operations = [
        migrations.AddField(
            model_name='engine',
            name='last_scheduled_restart_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
