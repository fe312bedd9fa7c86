"""Silences: a matching incident is recorded and shown (marked silenced) but nobody is told; once the
silence ends, an incident still open is told once. Through a real webhook receiver."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from alerts.models import Incident, IncidentEvent, Silence
from alerts.tasks import release_silences, repeat_red_alerts
from inference import engine_incidents
from inference.models import Engine
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work

receiver = notify_support.receiver  # a real webhook receiver, as a fixture of this module

pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a step and then its after-commit hooks, as a real commit would (the test itself is one transaction)."""

    def run(step, *args):
        with django_capture_on_commit_callbacks(execute=True):
            return step(*args)

    return run


@pytest.fixture(autouse=True)
def _clock(time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)


@pytest.fixture
def engine():
    return Engine.objects.create(name="glm", host="gpu-b", port=8001, model="/models/glm", served_model_name="glm")


def silence(source="", hours=2, **fields) -> Silence:
    return Silence.objects.create(source=source, ends_at=timezone.now() + timedelta(hours=hours),
                                  reason="replacing a card", **fields)


def test_a_silenced_engine_failure_is_recorded_but_sent_to_nobody(committed, receiver, engine):
    webhook(receiver.url)
    held = silence("engine:gpu-b:*")
    committed(engine_incidents.open_failed, engine, "3 failures within 10 min")
    incident = Incident.objects.open().get()
    assert incident.events.get(kind=IncidentEvent.Kind.OPENED).silenced_by == held
    assert work() == [] and receiver.requests == []
    assert committed(release_silences.apply).get().startswith("queued 0")  # still silenced: nothing


def test_after_the_silence_an_open_incident_is_told_once(committed, receiver, engine, time_machine):
    webhook(receiver.url)
    silence("engine:gpu-b:*", hours=2)
    committed(engine_incidents.open_failed, engine, "3 failures within 10 min")
    time_machine.shift(timedelta(hours=2, minutes=1))
    committed(release_silences.apply)
    committed(release_silences.apply)  # the next beat finds nothing more to send
    work()
    assert len(receiver.requests) == 1
    body = receiver.requests[0].body
    assert body["reason"] == "opened" and "held back by a silence (replacing a card)" in body["text"]
    assert body["after_silence"] is True


def test_a_silence_of_another_host_changes_nothing(committed, receiver, engine):
    webhook(receiver.url)
    silence("engine:gpu-a:*")
    committed(engine_incidents.open_failed, engine, "3 failures within 10 min")
    work()
    assert [r.body["reason"] for r in receiver.requests] == ["opened"]


def test_a_silenced_red_gets_no_reminders(committed, receiver, time_machine):
    webhook(receiver.url, repeat_minutes=30, levels=["red"])
    silence(kind="disk", level="red")
    committed(reading, 98)
    time_machine.shift(timedelta(minutes=95))
    committed(repeat_red_alerts.apply)
    assert work() == [] and receiver.requests == []


def test_a_resolved_incident_is_not_told_after_its_silence(committed, receiver, time_machine):
    webhook(receiver.url)
    silence("disk:/data", hours=1)
    committed(reading, 98)
    committed(reading, 50)  # resolved while silenced
    time_machine.shift(timedelta(hours=2))
    committed(release_silences.apply)
    assert work() == [] and receiver.requests == []
    assert not IncidentEvent.objects.filter(silenced_by__isnull=False, released=False).exists()


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw-12345678", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="alerts", codename__in=["change_incident", "add_silence"]))
    client = Client()
    client.force_login(user)
    return client


def test_one_click_and_a_reason_silence_an_incident_from_its_row(operator):
    reading(98)
    incident = Incident.objects.open().get()
    page = operator.get("/").content.decode()
    assert f'action="/incidents/{incident.pk}/silence/"' in page
    response = operator.post(f"/incidents/{incident.pk}/silence/", {"reason": "disk swap tonight", "hours": "8"})
    assert response.status_code == 302
    made = Silence.objects.get()
    assert (made.source, made.reason, made.created_by.username) == ("disk:/data", "disk swap tonight", "ops")
    assert made.ends_at == timezone.now() + timedelta(hours=8)
    page = operator.get("/").content.decode()
    assert "silenced until" in page and "data-silences" in page  # on the row and in the notifications card


def test_a_silence_needs_a_reason_and_a_known_duration(operator):
    reading(98)
    incident = Incident.objects.open().get()
    for form in ({"reason": "", "hours": "2"}, {"reason": "why", "hours": "1000"}):
        response = operator.post(f"/incidents/{incident.pk}/silence/", form, follow=True)
        assert "Say why you silence" in response.content.decode()
    assert not Silence.objects.exists()


def test_the_admin_refuses_a_silence_of_everything(admin_client):
    response = admin_client.post("/admin/alerts/silence/add/", {
        "source": "", "kind": "", "level": "", "starts_at_0": "2026-03-01", "starts_at_1": "10:00:00",
        "ends_at_0": "2026-03-01", "ends_at_1": "12:00:00", "reason": "quiet please"})
    assert response.status_code == 200 and "would hide every alert" in response.content.decode()
    assert not Silence.objects.exists()


def test_metrics_count_the_active_silences():
    silence("disk:/data")
    silence("disk:/old", hours=-1)  # ended an hour ago
    text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert "glmadmin_silences_active 1.0" in text


# --- maintenance windows: a silence that repeats every day ---

def at(clock, when: str) -> None:
    clock.move_to(f"2026-03-{when}Z", tick=False)


def test_a_daily_window_hides_the_quiet_hour_restart_but_not_an_engine_still_down_after_it(
        committed, receiver, engine, time_machine):
    webhook(receiver.url)
    at(time_machine, "01 12:00")
    Silence.objects.create(kind="engine", starts_at=timezone.now().replace(hour=2, minute=55),
                           ends_at=timezone.now().replace(hour=3, minute=30), daily=True,
                           reason="daily restarts at 03:00")
    # Day 2: the restart fails once and the engine is back within the window: nobody hears of it.
    at(time_machine, "02 03:00")
    committed(engine_incidents.open_failed, engine, "exited during the scheduled restart")
    at(time_machine, "02 03:10")
    committed(engine_incidents.resolve, engine)
    at(time_machine, "02 03:31")
    committed(release_silences.apply)
    assert work() == [] and receiver.requests == []
    # A disk incident inside the window is another kind: it is sent as always.
    at(time_machine, "03 03:00")
    committed(reading, 98)
    work()
    assert [r.body["reason"] for r in receiver.requests] == ["opened"]
    # Day 3: the engine fails and is still down when the window ends: one message, then.
    committed(engine_incidents.open_failed, engine, "exited during the scheduled restart")
    at(time_machine, "03 03:29")
    committed(release_silences.apply)
    work()
    assert len(receiver.requests) == 1
    at(time_machine, "03 03:31")
    committed(release_silences.apply)
    work()
    assert [(r.body["reason"], r.body["incident"]["kind"]) for r in receiver.requests] == [
        ("opened", "disk"), ("opened", "engine")]


def test_a_daily_window_is_shorter_than_a_day(admin_client):
    response = admin_client.post("/admin/alerts/silence/add/", {
        "kind": "engine", "starts_at_0": "2026-03-01", "starts_at_1": "02:00:00", "ends_at_0": "2026-03-02",
        "ends_at_1": "03:00:00", "daily": "on", "reason": "quiet hours"})
    assert response.status_code == 200 and "shorter than a day" in response.content.decode()
