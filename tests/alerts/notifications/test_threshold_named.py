"""A disk alert says which threshold was crossed, and its value: the real check on a real tmpfs, the real
notification (webhook) that results."""

import json

import pytest
from django.utils import timezone

from alerts.models import Incident
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from tests.support import notify as notify_support
from tests.support import tmpfs as tmpfs_support
from tests.support.notify import webhook, work
from tests.support.tmpfs import fill_to

pytestmark = [pytest.mark.privileged, pytest.mark.django_db]

volume, receiver = tmpfs_support.volume, notify_support.receiver  # real tmpfs and webhook receiver, as fixtures


def test_the_alert_names_the_threshold_crossed(no_default_filesystems, volume, receiver,
                                               django_capture_on_commit_callbacks):
    webhook(receiver.url)
    WatchedFilesystem.objects.create(path=str(volume), label="vol", yellow_for_seconds=0, orange_for_seconds=0,
                                     orange_percent=90.5)
    fill_to(volume, 93)
    with django_capture_on_commit_callbacks(execute=True):
        (reading,) = check_all(now=timezone.now())
    assert reading.level == "orange"
    assert "(orange threshold: 90.5 %)" in Incident.objects.get().message
    work()
    (request,) = receiver.requests
    text = json.loads(request.raw)["text"]
    assert f"(orange threshold: 90.5 %) on {volume}" in text, text
