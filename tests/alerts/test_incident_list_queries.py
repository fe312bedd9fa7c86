"""The incident lists (admin and dashboard) ask why each open incident is quiet: silences and inhibiting
incidents are read once per page, so the page costs the same number of queries with 2 or 8 open incidents."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident


def open_incidents(count: int, start: int = 0) -> None:
    for n in range(start, start + count):
        drive(f"engine:here:e{n}", Level.ORANGE, kind=Incident.Kind.ENGINE, title=f"engine e{n}", value=None,
              message="not ready", host="here")


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [reverse("admin:alerts_incident_changelist"), reverse("dashboard")])
def test_the_incident_lists_query_count_does_not_grow_with_open_incidents(admin_client, url):
    drive("disk:/data", Level.RED, kind=Incident.Kind.DISK, title="/data", value=97.0, message="97 %", host="here")
    open_incidents(2)
    few = queries(admin_client, url)
    open_incidents(6, start=2)
    page = admin_client.get(url).content.decode()
    assert page.count("inhibited by /data") == 8  # every echo still says why it is quiet
    assert queries(admin_client, url) == few
