"""alerts 0007 gives incidents recorded before hosts existed the host they are on: an engine's from its source
(engine:HOST:NAME), every other on this glmadmin host."""

import pytest
from django.conf import settings
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def test_old_incidents_get_their_hosts(migrator):
    old = migrator.apply_initial_migration(("alerts", "0006_maintenance_windows"))
    incident = old.apps.get_model("alerts", "Incident")
    now = timezone.now()
    for source, kind in (("engine:gpu-b:chat", "engine"), ("disk:/data", "disk"), ("engine:odd", "engine")):
        incident.objects.create(source=source, kind=kind, title=source, level="red", peak_level="red",
                                message="", opened_at=now, updated_at=now, resolved_at=now)

    new = migrator.apply_tested_migration(("alerts", "0007_incident_host_and_check_kinds"))
    hosts = dict(new.apps.get_model("alerts", "Incident").objects.values_list("source", "host"))
    assert hosts == {"engine:gpu-b:chat": "gpu-b", "disk:/data": settings.GLMADMIN_HOST_NAME,
                     "engine:odd": settings.GLMADMIN_HOST_NAME}
