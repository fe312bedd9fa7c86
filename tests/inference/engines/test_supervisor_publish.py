"""The supervisor's state changes never depend on telling the pages: a failing live publish (the hub
raising: a broken template, the channel layer gone) still leaves the engine's state and its incident committed."""

import pytest
from django.utils import timezone

from alerts.models import Incident
from glmadmin import live
from inference import supervisor
from inference.models import Engine
from inference.models import EngineState as S


@pytest.fixture
def broken_hub(monkeypatch):
    calls = []

    def broken_fragment(current):
        calls.append(1)
        raise RuntimeError("the live state cannot be drawn")

    monkeypatch.setitem(live._fragments, "broken", broken_fragment)
    return calls


@pytest.fixture
def crashing_engine(transactional_db, settings):
    # Two quick failures already: the next one is the third, which marks it failed (crash-loop detection).
    settings.ENGINE_MAX_QUICK_FAILURES = 3
    now = timezone.now().isoformat()
    return Engine.objects.create(name="flaky", port=8199, model="/nonexistent", state=S.READY,
                                 recent_failures=[now, now], pid=None)


def test_a_failing_publish_still_opens_the_failure_incident(crashing_engine, broken_hub):
    assert supervisor.reconcile(crashing_engine.pk)
    crashing_engine.refresh_from_db()
    assert crashing_engine.state == S.FAILED
    incident = Incident.objects.open().get(source=f"engine:{crashing_engine.host}:flaky")
    assert incident.kind == Incident.Kind.ENGINE and "3 failures" in incident.message
    assert broken_hub, "the publish was attempted (and failed) after the commit"


def test_the_published_state_shows_the_incident_it_opened(crashing_engine, monkeypatch):
    # Incident first, then the pages: the publish after the failure already carries its banner.
    seen = []
    monkeypatch.setattr(live, "publish", lambda force=False: seen.append(live.state()))
    supervisor.reconcile(crashing_engine.pk)
    states = [s for s in seen if any(e["state"] == S.FAILED for e in s["engines"])]
    assert states and all(any(i["title"] == "Engine flaky failed" for i in s["incidents"]) for s in states)
