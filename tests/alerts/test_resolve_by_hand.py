"""An operator can close an incident by hand, saying why; nobody can delete one (history is kept)."""

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from alerts import admission
from alerts.models import Incident, IncidentEvent
from alerts.notifications import delivery
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work

receiver = notify_support.receiver  # a real webhook receiver, as a fixture of this module

pytestmark = pytest.mark.django_db(transaction=True)  # the view's after-commit steps run for real


@pytest.fixture
def red():
    reading(98)  # a red disk incident, through the real level rule and driver
    return Incident.objects.open().get()


@pytest.fixture
def operator(client, django_user_model):
    user = django_user_model.objects.create_user("ops", password="pw-12345678", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_incident", content_type__app_label="alerts"))
    client.force_login(user)
    return client


def test_resolving_by_hand_records_who_and_why_and_lifts_the_pause(operator, receiver, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    channel = webhook(receiver.url)
    reading(98)
    red = Incident.objects.open().get()
    work()  # the channel heard the opening, so it hears the resolve
    assert admission.sync().paused
    response = operator.post(f"/incidents/{red.pk}/resolve/", {"note": "disk replaced, usage is a stale reading"})
    assert response.status_code == 302
    red.refresh_from_db()
    assert red.resolved_at is not None and not admission.current().paused
    event = red.events.get(kind=IncidentEvent.Kind.RESOLVED)
    assert (event.user.username, event.note) == ("ops", "disk replaced, usage is a stale reading")
    time_machine.shift(delivery.ORDER_GAP * 2)  # a later message about one incident waits for the one before
    work()
    resolved = [r.body for r in receiver.requests if r.body["reason"] == "resolved"]
    assert len(resolved) == 1 and "Resolved by ops: disk replaced" in resolved[0]["text"]
    assert channel.notifications.count() == 2


def test_a_resolve_without_a_note_is_refused_with_a_reason(red, operator):
    response = operator.post(f"/incidents/{red.pk}/resolve/", {"note": "  "}, follow=True)
    assert "Say why you resolve" in response.content.decode()
    assert Incident.objects.get(pk=red.pk).resolved_at is None


def test_resolving_needs_the_change_permission(red, client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    assert client.post(f"/incidents/{red.pk}/resolve/", {"note": "why not"}).status_code == 403
    assert Incident.objects.get(pk=red.pk).resolved_at is None


def test_the_dashboard_offers_resolve_to_operators_only(red, operator, client):
    assert f'action="/incidents/{red.pk}/resolve/"' in operator.get("/").content.decode()


def test_nobody_deletes_an_incident(red, admin_client):
    assert admin_client.get(f"/admin/alerts/incident/{red.pk}/delete/").status_code == 403
    changelist = admin_client.get("/admin/alerts/incident/").content.decode()
    assert "delete_selected" not in changelist
    assert admin_client.post("/admin/alerts/incident/", {"action": "delete_selected", "_selected_action": [red.pk],
                                                         "post": "yes"}).status_code in (200, 302)
    assert Incident.objects.filter(pk=red.pk).exists()
