"""A watched path must exist and be a directory when saved (WatchedFilesystem.clean); its help says so."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("monitoring", "0012_cleanup_notes_and_shown_names"),
    ]

    operations = [
        migrations.AlterField(
            model_name="watchedfilesystem",
            name="path",
            field=models.CharField(help_text="The filesystem's mount point, or any directory on it (it must exist).",
                                   max_length=500, unique=True),
        ),
    ]
