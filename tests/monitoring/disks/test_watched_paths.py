"""A watched path must exist and be a directory (a mount point or one on the filesystem) when it is saved;
one that stops being readable later is an incident, not a silent line on the dashboard."""

import pytest

from alerts.models import Incident
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem

ADD_URL = "/admin/monitoring/watchedfilesystem/add/"
pytestmark = pytest.mark.django_db


def add(admin_client, path):
    data = {"label": "data", "path": str(path), "enabled": "on", "yellow_enabled": "on", "yellow_percent": "85",
            "orange_enabled": "on", "orange_percent": "92", "red_enabled": "on", "red_percent": "97",
            "clear_margin": "2", "yellow_for_seconds": "60", "orange_for_seconds": "30", "red_for_seconds": "0",
            "host": "local"}
    response = admin_client.post(ADD_URL, data)
    if response.status_code != 200:
        return response.status_code, ""
    return 200, " ".join(response.context["adminform"].form.errors.get("path", []))


def test_a_path_that_does_not_exist_is_refused(admin_client, no_default_filesystems, tmp_path):
    status, error = add(admin_client, tmp_path / "not-mounted")
    assert status == 200 and not WatchedFilesystem.objects.exists()
    assert error == (f"{tmp_path}/not-mounted cannot be read (No such file or directory): give an existing mount "
                     "point or directory.")


def test_a_file_is_refused_and_a_directory_is_saved(admin_client, no_default_filesystems, tmp_path):
    (tmp_path / "file").write_text("x")
    status, error = add(admin_client, tmp_path / "file")
    assert status == 200 and "is not a directory" in error
    assert add(admin_client, tmp_path) == (302, "")


def test_a_path_that_disappears_is_an_incident_until_it_is_back(no_default_filesystems, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    fs = WatchedFilesystem.objects.create(path=str(volume), label="volume", yellow_percent=99.7, orange_percent=99.8,
                                          red_percent=99.9)  # no disk here is that full
    (reading,) = check_all()
    assert reading.error == "" and not Incident.objects.exists()

    volume.rmdir()
    (reading,) = check_all()
    incident = Incident.objects.open().get(source=fs.source)
    assert (incident.kind, incident.level, incident.title) == ("disk", "orange", f"Disk volume ({volume})")
    assert incident.message == (f"cannot read {volume}: No such file or directory: its usage is unknown, nothing "
                                "on it is being watched")
    assert reading.transition.kind == "opened"
    assert check_all()[0].transition is None  # still unreadable: the same incident, no new event

    volume.mkdir()
    (reading,) = check_all()
    assert reading.transition.kind == "resolved" and not Incident.objects.open().exists()
