"""A red alert about a filesystem nobody watches any more must not pause inference for good: deleting,
switching off or re-pathing the filesystem resolves its incident (saying why) and lifts the pause."""

import httpx
import pytest

from alerts.models import Incident, IncidentEvent
from inference.models import ApiKey
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "none", "messages": [{"role": "user", "content": "hi"}]}
CHANGE_URL = "/admin/monitoring/watchedfilesystem/{}/change/"


@pytest.fixture
def red_disk(no_default_filesystems, tmp_path):
    # Thresholds any real filesystem is over: the check opens a red incident on the spot.
    fs = WatchedFilesystem.objects.create(path=str(tmp_path), label="scratch", yellow_percent=0.001,
                                          orange_percent=0.002, red_percent=0.003, clear_margin=0)
    check_all()
    assert Incident.objects.open().get(source=fs.source).level == "red"
    return fs


@pytest.fixture
def api_key(db):
    key = ApiKey(name="orphans")
    plain = key.new_secret()
    key.save()
    return plain


def chat(server, plain):
    return httpx.post(f"{server}/v1/chat/completions", json=CHAT, timeout=30,
                      headers={"Authorization": f"Bearer {plain}"})


def form(fs, **overrides):
    data = {"label": fs.label, "path": fs.path, "enabled": "on", "yellow_enabled": "on", "yellow_percent": "0.001",
            "orange_enabled": "on", "orange_percent": "0.002", "red_enabled": "on", "red_percent": "0.003",
            "clear_margin": "0", "yellow_for_seconds": "0", "orange_for_seconds": "0", "red_for_seconds": "0",
            "host": fs.host}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def resolved_note(fs) -> str:
    incident = Incident.objects.get(source=fs.source)
    assert incident.resolved_at is not None
    return incident.events.get(kind=IncidentEvent.Kind.RESOLVED).note


def test_switching_the_filesystem_off_in_the_admin_lifts_the_pause(server, red_disk, api_key, admin_client):
    assert chat(server, api_key).json()["error"]["code"] == "requests_paused"
    response = admin_client.post(CHANGE_URL.format(red_disk.pk), form(red_disk, enabled=None))
    assert response.status_code == 302
    assert "switched off" in resolved_note(red_disk)
    assert chat(server, api_key).status_code == 404  # admitted again (and then: no such model)


def test_deleting_the_filesystem_resolves_its_incident(server, red_disk, api_key, admin_client):
    response = admin_client.post(f"/admin/monitoring/watchedfilesystem/{red_disk.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not WatchedFilesystem.objects.exists()
    assert "no longer watched" in resolved_note(red_disk)
    assert chat(server, api_key).status_code == 404


def test_a_new_path_resolves_the_old_paths_incident(red_disk, admin_client, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    response = admin_client.post(CHANGE_URL.format(red_disk.pk), form(red_disk, path=str(other)))
    assert response.status_code == 302
    assert "no longer watched" in resolved_note(red_disk)
    # The new path is judged by its own checks, from scratch.
    check_all()
    assert Incident.objects.open().get().source == f"disk:{other}"


def test_a_still_watched_filesystem_keeps_its_incident(red_disk, admin_client):
    response = admin_client.post(CHANGE_URL.format(red_disk.pk), form(red_disk, label="renamed"))
    assert response.status_code == 302
    assert Incident.objects.open().filter(source=red_disk.source).exists()
