"""Real disk usage: a small tmpfs mounted by the test, filled and freed."""

import pytest

from alerts import admission
from alerts.models import Incident
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from tests.support import tmpfs as tmpfs_support
from tests.support.tmpfs import empty, fill_to

volume = tmpfs_support.volume  # a real tmpfs, as a fixture of this module

pytestmark = pytest.mark.privileged


def reading(mountpoint):
    (r,) = check_all()
    return r


@pytest.mark.django_db
def test_crossing_each_threshold_and_freeing_space(no_default_filesystems, volume):
    # Every level at once (the defaults hold yellow and orange back: test_for_durations)
    WatchedFilesystem.objects.create(path=str(volume), label="vol", yellow_for_seconds=0, orange_for_seconds=0)
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

    empty(volume)
    r = reading(volume)
    assert (r.level, r.transition.kind) == (None, "resolved")
    assert not admission.current().paused
    incident = Incident.objects.get()
    assert incident.peak_level == "red" and incident.resolved_at is not None
    assert list(incident.events.values_list("kind", flat=True)) == ["opened", "escalated", "escalated", "resolved"]
