import pytest
from django.conf import settings

from monitoring.models import WatchedFilesystem

ADD_URL = "/admin/monitoring/watchedfilesystem/add/"


def form(**overrides):
    data = {"label": "data", "path": "/tmp", "enabled": "on", "yellow_enabled": "on", "yellow_percent": "85",
            "orange_enabled": "on", "orange_percent": "92", "red_enabled": "on", "red_percent": "97",
            "clear_margin": "2", "yellow_for_seconds": "60", "orange_for_seconds": "30", "red_for_seconds": "0",
            "host": settings.GLMADMIN_HOST_NAME}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def admin(admin_client, no_default_filesystems):
    return admin_client


def errors(response):
    return response.context["adminform"].form.errors


@pytest.mark.django_db
def test_valid_thresholds_are_saved(admin):
    response = admin.post(ADD_URL, form(yellow_for_seconds="120", orange_for_seconds="15", red_for_seconds="5"))
    assert response.status_code == 302
    fs = WatchedFilesystem.objects.get()
    assert fs.thresholds() == {"yellow": 85.0, "orange": 92.0, "red": 97.0}
    assert [fs.for_seconds(level) for level in ("yellow", "orange", "red")] == [120, 15, 5]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"yellow_percent": "93"}, "orange_percent", "must be above the yellow threshold"),
        ({"red_percent": "90"}, "red_percent", "must be above the orange threshold"),
        ({"red_percent": "101"}, "red_percent", "less than or equal to 100"),
        ({"yellow_percent": "-1"}, "yellow_percent", "greater than or equal to 0"),
        ({"clear_margin": "-0.5"}, "clear_margin", "greater than or equal to 0"),
        ({"path": "relative/dir"}, "path", "absolute path"),
        ({"orange_percent": "abc"}, "orange_percent", "Enter a number"),
        ({"orange_for_seconds": "-5"}, "orange_for_seconds", "greater than or equal to 0"),
        ({"yellow_for_seconds": "3601"}, "yellow_for_seconds", "less than or equal to 3600"),
        ({"red_for_seconds": "1.5"}, "red_for_seconds", "Enter a whole number"),
        ({"red_for_seconds": ""}, "red_for_seconds", "This field is required"),
    ],
)
def test_bad_thresholds_name_the_field(admin, overrides, field, text):
    response = admin.post(ADD_URL, form(**overrides))
    assert response.status_code == 200
    assert text in " ".join(errors(response)[field])
    assert not WatchedFilesystem.objects.exists()


@pytest.mark.django_db
def test_disabled_level_is_not_compared(admin):
    # orange switched off: its value no longer has to sit between yellow and red
    response = admin.post(ADD_URL, form(orange_enabled=None, orange_percent="99"))
    assert response.status_code == 302
    assert WatchedFilesystem.objects.get().thresholds() == {"yellow": 85.0, "red": 97.0}


@pytest.mark.django_db
def test_beat_schedules_are_editable_in_admin(admin):
    response = admin.get("/admin/django_celery_beat/periodictask/")
    assert b"Check disk usage" in response.content


@pytest.mark.django_db
def test_the_schedules_last_run_says_how_fresh_it_is(admin):
    """Issue 17: 'last run: –' for tasks due every 10 s, because beat saves it only every 3 minutes."""
    html = admin.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "Last run (beat saves it every 3 min)" in html and "not saved yet" in html
