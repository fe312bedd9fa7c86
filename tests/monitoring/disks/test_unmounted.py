"""An unmounted filesystem leaves its mount point behind as an ordinary directory, and statvfs there reads the
filesystem underneath: the check would go on reporting another disk's numbers. A path that was a mount point at
its first check is an incident while it is not one. Real mounts (root: CI runs as root)."""

import re
import subprocess

import pytest

from alerts.models import Incident
from monitoring.disk_check import Watcher, check_all
from monitoring.models import WatchedFilesystem

pytestmark = pytest.mark.django_db
QUIET = {"yellow_percent": 99.7, "orange_percent": 99.8, "red_percent": 99.9}  # no disk here is that full


def mount(*args):
    result = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here: {result.stderr.strip()}")


def umount(path):
    subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def mounts():
    """Mount points to unmount at the end, whatever the test left mounted."""
    points = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def mount_tmpfs(point):
    mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", point)


@pytest.fixture
def models_mount(tmp_path, mounts):
    """tmp_path/models with a tmpfs mounted on it."""
    point = tmp_path / "models"
    point.mkdir()
    mount_tmpfs(point)
    mounts.append(point)
    return point


def watched(path) -> WatchedFilesystem:
    return WatchedFilesystem.objects.create(path=str(path), label="models", **QUIET)


def disk_card(client, fs) -> str:
    """What the dashboard's Disks card says of fs's usage."""
    page = client.get("/").content.decode()
    return re.search(r"data-fs-percent[^>]*>([^<]*)<", page[page.index(f'data-overview-fs="{fs.pk}"'):]).group(1)


def test_an_unmounted_filesystem_is_an_incident_until_it_is_mounted_again(no_default_filesystems, models_mount,
                                                                          admin_client):
    point = models_mount
    fs = watched(point)
    (reading,) = check_all()
    assert reading.error == "" and reading.transition is None
    assert disk_card(admin_client, fs) == "0.0 %"
    fs.refresh_from_db()
    assert fs.mount_point is True  # learned at the first check

    umount(point)  # the directory stays, and statvfs there now reads tmp_path's filesystem
    (reading,) = check_all()
    incident = Incident.objects.open().get(source=fs.source)
    assert (incident.kind, incident.level, incident.title) == ("disk", "orange", f"Disk models ({point})")
    assert incident.message == (f"{point} is not a mount point any more (unmounted?): its usage is unknown, "
                                "nothing on it is being watched")
    assert reading.transition.kind == "opened" and reading.percent is None
    fs.refresh_from_db()
    assert fs.last_error == f"{point} is not a mount point any more (unmounted?)"
    assert check_all()[0].transition is None  # the same incident, no new event
    assert Watcher().run()[0].transition is None  # the quick checks see it too, and say nothing new
    assert disk_card(admin_client, fs) == "unreadable"  # not the last good reading, which said all is well

    mount_tmpfs(point)
    (reading,) = check_all()
    assert reading.transition.kind == "resolved" and not Incident.objects.open().exists()
    fs.refresh_from_db()
    assert fs.last_error == "" and fs.mount_point is True


def test_a_bind_mount_of_the_same_filesystem_counts_as_a_mount_point(no_default_filesystems, tmp_path, mounts):
    # Same device number as its parent: a comparison of st_dev (os.path.ismount) calls it a plain directory.
    source, point = tmp_path / "store", tmp_path / "models"
    source.mkdir()
    point.mkdir()
    mount("--bind", source, point)
    mounts.append(point)
    fs = watched(point)
    check_all()
    fs.refresh_from_db()
    assert fs.mount_point is True

    umount(point)
    (reading,) = Watcher().run()
    assert reading.transition.kind == "opened"
    assert Incident.objects.open().get(source=fs.source).message.startswith(f"{point} is not a mount point any more")


def test_a_plain_directory_is_never_such_an_incident(no_default_filesystems, tmp_path):
    fs = watched(tmp_path)
    check_all()
    fs.refresh_from_db()
    assert fs.mount_point is False
    assert check_all()[0].transition is None and not Incident.objects.exists()


def test_a_new_path_is_learned_afresh_and_other_edits_keep_what_was_learned(no_default_filesystems, tmp_path,
                                                                             models_mount):
    point = models_mount
    fs = watched(point)
    check_all()
    umount(point)
    check_all()
    assert Incident.objects.open().filter(source=fs.source).exists()

    # Editing a threshold while the mount is gone keeps the alert: it is still not the disk it was.
    fs = WatchedFilesystem.objects.get(pk=fs.pk)
    fs.yellow_percent = 99.6
    fs.save()
    fs.refresh_from_db()
    assert fs.mount_point is True
    assert check_all()[0].transition is None and Incident.objects.open().filter(source=fs.source).exists()

    # Another path is another filesystem: its first check learns what it is.
    other = tmp_path / "elsewhere"
    other.mkdir()
    fs.path = str(other)
    fs.save()
    fs.refresh_from_db()
    assert fs.mount_point is None
    (reading,) = check_all()
    assert reading.error == "" and not Incident.objects.open().filter(source=fs.source).exists()
    fs.refresh_from_db()
    assert fs.mount_point is False
