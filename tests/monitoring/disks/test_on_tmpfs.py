"""Real disk usage: a small tmpfs mounted by the test, filled and freed."""

import os
import subprocess

import pytest

from alerts import admission
from alerts.models import Incident
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem

pytestmark = pytest.mark.privileged


@pytest.fixture
def volume(tmp_path):
    mountpoint = tmp_path / "vol"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill_to(mountpoint, percent):
    """Write a file so the filesystem reaches about `percent` in use."""
    st = os.statvfs(mountpoint)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    extra = int(total * percent / 100) - used
    with open(mountpoint / f"fill-{percent}", "wb") as fh:
        fh.write(b"\0" * max(extra, 0))


def reading(mountpoint):
    (r,) = check_all()
    return r


@pytest.mark.django_db
def test_crossing_each_threshold_and_freeing_space(no_default_filesystems, volume):
    WatchedFilesystem.objects.create(path=str(volume), label="vol")
    assert reading(volume).level is None

    fill_to(volume, 86)
    r = reading(volume)
    assert (r.level, r.transition.kind) == ("yellow", "opened")
    assert 85 <= r.percent < 92

    fill_to(volume, 93)
    assert reading(volume).level == "orange"
    assert not admission.current().paused

    fill_to(volume, 98)
    r = reading(volume)
    assert (r.level, r.transition.kind) == ("red", "escalated")
    state = admission.current()
    assert state.paused and f"on {volume}" in state.reason

    for f in volume.iterdir():
        f.unlink()
    r = reading(volume)
    assert (r.level, r.transition.kind) == (None, "resolved")
    assert not admission.current().paused
    incident = Incident.objects.get()
    assert incident.peak_level == "red" and incident.resolved_at is not None
    assert list(incident.events.values_list("kind", flat=True)) == ["opened", "escalated", "escalated", "resolved"]
