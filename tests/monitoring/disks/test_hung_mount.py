"""A watched path on a mount that never answers (a real FUSE mount nobody serves) stalls its own check only.

Its statvfs misses its deadline and is reported as a "check stalled" incident;
the other filesystem in the same run is read, its incident opens and its
notification goes out; the hung call is not started again while it hangs; and
when the mount answers again the stalled check resolves by itself.
"""

import io
import threading

import pytest
from django.core.management import CommandError, call_command

from alerts.models import Incident
from glmadmin.lib import deadline
from monitoring import disk_check
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from monitoring.models import disks as disks_model
from tests.support import hung_mount as hung_mount_support
from tests.support import notify as notify_support
from tests.support import tmpfs as tmpfs_support
from tests.support.notify import webhook, work
from tests.support.processes import wait_for
from tests.support.tmpfs import fill_to

# The real mounts and the real webhook receiver, as fixtures of this module.
hung_mount, volume, receiver = hung_mount_support.hung_mount, tmpfs_support.volume, notify_support.receiver

pytestmark = pytest.mark.privileged

DEADLINE = 3.0  # short, to keep the test quick, yet far above what statvfs on the tmpfs takes under load


def statvfs_threads(path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"deadline statvfs:{path}"]


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(disk_check, "STATVFS_SECONDS", DEADLINE)


@pytest.mark.django_db
def test_a_hung_mount_stalls_its_own_check_only(no_default_filesystems, hung_mount, volume, receiver,
                                                short_deadline, monkeypatch, django_capture_on_commit_callbacks):
    webhook(receiver.url, levels=["orange", "red"])
    models = WatchedFilesystem.objects.create(path=str(hung_mount.path), label="models")
    WatchedFilesystem.objects.create(path=str(volume), label="vol")
    fill_to(volume, 98)  # red: immediate by default

    # Bounded: were the check to wait on the mount, the connection ends after 60 s and the test fails.
    with hung_mount.ended_after(60), django_capture_on_commit_callbacks(execute=True):
        hung, vol = sorted(check_all(), key=lambda r: r.filesystem.label)
    assert hung.stalled and hung.error == f"statvfs on {hung_mount.path} did not return in 3 s"
    stall = Incident.objects.open().get(kind=Incident.Kind.CHECK)
    assert (stall.source, stall.level) == (f"check:disk:{hung_mount.path}", "orange")
    assert stall.message.startswith(f"statvfs on {hung_mount.path} did not return in 3 s")
    assert not Incident.objects.filter(source=models.source).exists()  # its usage is unknown, not full

    assert (vol.level, vol.transition.kind) == ("red", "opened")
    assert Incident.objects.open().get(source=f"disk:{volume}").level == "red"
    work()  # the worker's delivery of what the run queued
    texts = [r.raw.decode() for r in receiver.requests]
    assert any("vol" in t and "RED" in t.upper() for t in texts), texts
    assert any("Check stalled" in t for t in texts), texts

    # A check repeated while the call hangs joins it: still one thread on the path, the stall stays one incident.
    with hung_mount.ended_after(60), django_capture_on_commit_callbacks(execute=True):
        again = {r.filesystem.label: r for r in check_all()}
    assert again["models"].stalled and again["vol"].level == "red"
    assert len(statvfs_threads(hung_mount.path)) == 1
    assert Incident.objects.filter(kind=Incident.Kind.CHECK).count() == 1
    assert WatchedFilesystem.objects.get(pk=models.pk).last_error == hung.error

    hung_mount.answer(percent=50)  # the server comes back: the hung call returns
    monkeypatch.setattr(disk_check, "STATVFS_SECONDS", 30.0)  # nothing hangs any more: a generous deadline
    wait_for(lambda: not statvfs_threads(hung_mount.path), 30, "the hung statvfs to return")
    with hung_mount.ended_after(60), django_capture_on_commit_callbacks(execute=True):
        back = {r.filesystem.label: r for r in check_all()}
    assert not back["models"].stalled and back["models"].percent == pytest.approx(50, abs=1)
    stall.refresh_from_db()
    assert stall.resolved_at is not None
    assert list(stall.events.values_list("kind", flat=True)) == ["opened", "resolved"]
    assert WatchedFilesystem.objects.get(pk=models.pk).last_error == ""
    assert not [key for key in deadline.hung() if str(hung_mount.path) in key]


@pytest.mark.django_db
def test_a_stalled_check_of_a_filesystem_no_longer_watched_is_resolved(no_default_filesystems, hung_mount,
                                                                        short_deadline):
    fs = WatchedFilesystem.objects.create(path=str(hung_mount.path), label="models")
    with hung_mount.ended_after(60):
        (reading,) = check_all()
    assert reading.stalled
    fs.enabled = False
    fs.save()
    check_all()
    stall = Incident.objects.get(kind=Incident.Kind.CHECK)
    assert stall.resolved_at is not None
    assert stall.events.last().kind == "resolved"


@pytest.mark.django_db
def test_the_admin_refuses_a_path_on_a_hung_mount_without_hanging(no_default_filesystems, hung_mount, admin_client,
                                                                  monkeypatch):
    monkeypatch.setattr(disks_model, "PATH_CHECK_SECONDS", DEADLINE)
    data = {"label": "models", "path": str(hung_mount.path), "enabled": "on", "yellow_enabled": "on",
            "yellow_percent": "85", "orange_enabled": "on", "orange_percent": "92", "red_enabled": "on",
            "red_percent": "97", "clear_margin": "2", "yellow_for_seconds": "60", "orange_for_seconds": "30",
            "red_for_seconds": "0",
            "host": "local"}
    with hung_mount.ended_after(60):
        response = admin_client.post("/admin/monitoring/watchedfilesystem/add/", data)
    assert response.status_code == 200
    (error,) = response.context["adminform"].form.errors["path"]
    assert error == (f"{hung_mount.path} does not answer (statvfs on {hung_mount.path} did not return in 3 s): "
                     "is its mount hung?")
    assert not WatchedFilesystem.objects.exists()


@pytest.mark.django_db
def test_check_disk_names_the_hung_call_and_exits_non_zero(no_default_filesystems, hung_mount, short_deadline):
    WatchedFilesystem.objects.create(path=str(hung_mount.path), label="models")
    out = io.StringIO()
    with hung_mount.ended_after(60), pytest.raises(CommandError) as failed:
        call_command("check_disk", stdout=out)
    assert str(failed.value) == f"statvfs on {hung_mount.path} did not return in 3 s"
    assert f"ERROR  statvfs on {hung_mount.path} did not return in 3 s  (orange incident opened)" in out.getvalue()
