"""An incident records the host its trouble is on: the caller's when given, else this glmadmin host."""

import pytest

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from inference import engine_incidents
from inference.models import Engine

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("given, expected", [(None, "this"), ("gpu-b", "gpu-b")])
def test_the_host_is_recorded_when_the_incident_opens(given, expected, settings):
    settings.GLMADMIN_HOST_NAME = "this"
    transition = drive("engine:x", Level.ORANGE, kind=Incident.Kind.ENGINE, title="t", value=None, message="m",
                       host=given)
    assert transition.incident.host == expected
    assert Incident.objects.get(source="engine:x").host == expected


def test_an_engine_incident_is_on_the_engines_host(settings):
    settings.GLMADMIN_HOST_NAME = "web"
    engine = Engine.objects.create(name="far", host="gpu-b", port=8300, model="/models/x")
    engine_incidents.open_failed(engine, "3 failures within 10 min")
    assert Incident.objects.get(kind=Incident.Kind.ENGINE).host == "gpu-b"
