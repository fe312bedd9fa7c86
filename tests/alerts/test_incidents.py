import threading

import pytest
from django.db import connection

from alerts.incidents import _move, acknowledge, drive
from alerts.models import Incident, IncidentEvent


def step(target, value):
    return drive("disk:/data", target, kind="disk", title="Disk data (/data)", value=value, message=f"at {value}")


@pytest.mark.django_db
def test_lifecycle_records_each_transition_once():
    assert step("yellow", 86).kind == "opened"
    assert step("yellow", 87) is None  # same level: nothing to record
    assert step("red", 97.5).kind == "escalated"
    assert step("orange", 94).kind == "deescalated"
    assert step(None, 50).kind == "resolved"
    assert step(None, 40) is None

    incident = Incident.objects.get()
    assert (incident.peak_level, incident.resolved_at is not None) == ("red", True)
    kinds = list(incident.events.values_list("kind", "level"))
    assert kinds == [("opened", "yellow"), ("escalated", "red"), ("deescalated", "orange"), ("resolved", "")]


@pytest.mark.django_db
def test_new_episode_opens_a_new_incident():
    step("yellow", 86)
    step(None, 10)
    step("orange", 93)
    assert Incident.objects.count() == 2
    assert Incident.objects.open().get().level == "orange"


@pytest.mark.django_db
def test_stale_view_cannot_record_a_transition_twice():
    step("yellow", 86)
    stale = Incident.objects.get()
    assert _move(stale, "orange", value=93, message="m").kind == "escalated"
    # A second checker that read the incident before the escalation loses the claim.
    assert _move(stale, "orange", value=93, message="m") is None
    assert _move(stale, None, value=10, message="m") is None
    assert IncidentEvent.objects.filter(kind="escalated").count() == 1
    assert Incident.objects.open().count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_checks_open_one_incident():
    barrier = threading.Barrier(4)
    results = []

    def check():
        barrier.wait()
        try:
            results.append(step("orange", 93))
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert Incident.objects.count() == 1
    assert IncidentEvent.objects.filter(kind="opened").count() == 1


@pytest.mark.django_db
def test_acknowledge_records_who_once(django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw-12345678")
    step("orange", 93)
    incident = Incident.objects.get()
    assert acknowledge(incident, user) is True
    assert acknowledge(incident, user) is False
    incident.refresh_from_db()
    assert incident.acknowledged_by == user
    assert incident.events.filter(kind="acknowledged").count() == 1
