"""Who hears what over an incident's life, through a real SMTP server and a real webhook receiver."""

import pytest
from django.core.management import call_command

from alerts.models import DeliveryAttempt, Notification
from alerts.notifications import delivery
from tests.support import notify as notify_support
from tests.support.notify import mail_channel, reading, webhook, work

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module

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


def reasons(hook) -> list[tuple[str, str]]:
    return [(r.body["reason"], r.body["level"]) for r in hook.requests]


def test_open_escalate_resolve_sends_exactly_the_expected_messages(committed, receiver, smtp):
    mail_channel("ops@example.com, oncall@example.com")  # red only
    webhook(receiver.url)  # every level

    for percent in (86, 93, 97.5, 50):  # opened yellow, escalated orange, escalated red, resolved
        committed(reading, percent)
        work()

    assert reasons(receiver) == [("opened", "yellow"), ("escalated", "orange"), ("escalated", "red"),
                                 ("resolved", "")]
    assert [m["Subject"] for _, m in smtp.messages] == [
        "[RED] Disk data (/data): escalated from orange",
        "[RESOLVED] Disk data (/data)",
    ]
    recipients, red = smtp.messages[0]
    assert recipients == ["ops@example.com", "oncall@example.com"]
    assert "disk at 97.5 % on /data" in red.get_content()
    assert "is resolved (now 50.0 %)" in smtp.messages[1][1].get_content()
    assert "peak level red" in smtp.messages[1][1].get_content()
    body = receiver.requests[2].body
    assert body["incident"]["source"] == "disk:/data" and body["event"]["value"] == 97.5
    assert body["id"] == receiver.requests[2].headers["Idempotency-Key"]

    assert set(Notification.objects.values_list("status", "attempt_count")) == {("sent", 1)}
    assert DeliveryAttempt.objects.filter(status="ok").count() == 6
    # Running the queue and the sweep again sends nothing more.
    work()
    assert [delivery.deliver(pk).status for pk in Notification.objects.values_list("pk", flat=True)] == ["skipped"] * 6
    assert (len(receiver.requests), len(smtp.messages)) == (4, 2)


def test_deescalation_and_resolve_go_only_to_channels_already_told(committed, receiver, smtp):
    mail_channel()  # red only
    webhook(receiver.url, levels=["orange"])

    committed(reading, 86)  # yellow: neither channel receives yellow
    committed(reading, 93)  # orange: the webhook hears it
    committed(reading, 98)  # red: the mail channel hears it; the webhook, told already, hears it too
    committed(reading, 94)  # down to orange: both have been told
    committed(reading, 10)
    work()

    assert reasons(receiver) == [("escalated", "orange"), ("escalated", "red"), ("deescalated", "orange"),
                                 ("resolved", "")]
    assert [m["Subject"] for _, m in smtp.messages] == [
        "[RED] Disk data (/data): escalated from orange",
        "[ORANGE] Disk data (/data): down from red, still open",
        "[RESOLVED] Disk data (/data)",
    ]

    # An incident that never reached the mail channel's levels does not bother it, not even its resolve.
    committed(reading, 86)
    committed(reading, 10)
    work()
    assert len(smtp.messages) == 3 and len(receiver.requests) == 4


def test_incident_kinds_and_switched_off_channels(committed, receiver):
    webhook(receiver.url, name="engines only", incident_kinds=["engine"])
    webhook(receiver.url, name="off", enabled=False)
    committed(reading, 98)
    work()
    assert receiver.requests == [] and not Notification.objects.exists()

    webhook(receiver.url, name="disks", incident_kinds=["disk"])
    committed(reading, 10)  # resolved: the new channel was never told about this incident
    committed(reading, 98)
    work()
    assert reasons(receiver) == [("opened", "red")]


def test_test_alert_notifies_marked_as_test(committed, receiver, smtp):
    mail_channel()
    webhook(receiver.url)
    committed(call_command, "test_alert", "--level", "red")
    work()

    (_, message), = smtp.messages
    assert message["Subject"] == "[TEST] [RED] Simulated disk alert: opened"
    assert "This is a test alert (manage.py test_alert): nothing is wrong." in message.get_content()
    body = receiver.requests[0].body
    assert body["is_test"] is True and body["incident"]["title"] == "Simulated disk alert"

    committed(call_command, "test_alert", "--clear")
    work()
    assert smtp.messages[1][1]["Subject"] == "[TEST] [RESOLVED] Simulated disk alert"


def test_rolled_back_transition_tells_nobody(receiver, django_capture_on_commit_callbacks):
    from django.db import transaction

    webhook(receiver.url)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            reading(98)
            raise RuntimeError("the check failed after the transition")
    assert callbacks == [] and not Notification.objects.exists()
