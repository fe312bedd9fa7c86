"""Unacknowledged red incidents are repeated every N minutes; acknowledging stops it and records who."""

import pytest

from alerts.models import Incident, Notification
from alerts.tasks import repeat_red_alerts
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work

receiver = notify_support.receiver  # the real webhook receiver, as a fixture of this module
pytestmark = pytest.mark.django_db


@pytest.fixture
def step(django_capture_on_commit_callbacks):
    def run(percent):
        with django_capture_on_commit_callbacks(execute=True):
            reading(percent)
        work()

    return run


def tick():
    """One run of the beat task, then the worker."""
    result = repeat_red_alerts.apply().get()
    work()
    return result


def sent(hook) -> list[str]:
    return [r.body["subject"] for r in hook.requests]


def test_red_repeats_on_schedule_without_a_backlog(step, receiver, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(receiver.url, levels=["red"], repeat_minutes=30)
    step(98)

    time_machine.shift(29 * 60)
    assert tick() == "queued 0 reminder(s), 0 escalation(s)"
    time_machine.shift(60)
    assert tick() == "queued 1 reminder(s), 0 escalation(s)"
    assert tick() == "queued 0 reminder(s), 0 escalation(s)"  # a second beat run at the same moment plans nothing
    # The beat was down for two and a half hours: one reminder, not five.
    time_machine.move_to("2026-03-01 13:10Z", tick=False)
    assert tick() == "queued 1 reminder(s), 0 escalation(s)"

    assert sent(receiver) == [
        "[RED] Disk data (/data): opened",
        "[RED] Disk data (/data): still red, not acknowledged (reminder 1)",
        "[RED] Disk data (/data): still red, not acknowledged (reminder 6)",
    ]
    assert "Red since 2026-03-01 10:00:00 UTC (3 h 10 min)" in receiver.requests[-1].body["text"]


def test_acknowledge_from_the_dashboard_stops_repeats_and_records_who(step, receiver, time_machine, admin_client,
                                                                      admin_user):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(receiver.url, levels=["red"], repeat_minutes=10)
    step(98)
    time_machine.shift(10 * 60)
    tick()
    time_machine.shift(10 * 60)
    repeat_red_alerts.apply()  # reminder 2 is queued...
    incident = Incident.objects.get()
    admin_client.post(f"/incidents/{incident.pk}/acknowledge/")  # ...and then someone acknowledges
    assert work() == ["cancelled: the incident was acknowledged by admin"]

    time_machine.shift(60 * 60)
    assert tick() == "queued 0 reminder(s), 0 escalation(s)"
    assert len(receiver.requests) == 2
    ack = incident.events.get(kind="acknowledged")
    assert ack.user == admin_user

    step(10)  # the resolve still goes out, and says who acknowledged
    assert receiver.requests[-1].body["reason"] == "resolved"
    assert "Acknowledged by admin" in receiver.requests[-1].body["text"]


def test_interval_is_per_channel_and_zero_never_repeats(step, receiver, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(receiver.url, name="often", levels=["red"], repeat_minutes=5)
    webhook(receiver.url, name="never", levels=["red"], repeat_minutes=0)
    webhook(receiver.url, name="orange only", levels=["orange"], repeat_minutes=5)
    step(98)
    for _ in range(3):
        time_machine.shift(5 * 60)
        tick()
    by_channel = {}
    for n in Notification.objects.filter(reason="repeat").select_related("channel"):
        by_channel[n.channel.name] = by_channel.get(n.channel.name, 0) + 1
    assert by_channel == {"often": 3}


def test_reminders_stop_below_red(step, receiver, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(receiver.url, levels=["red"], repeat_minutes=30)
    step(98)
    time_machine.shift(30 * 60)
    repeat_red_alerts.apply()  # queued while red...
    reminder = Notification.objects.get(reason="repeat")
    reading(93)  # ...down to orange before the worker got to it
    work()
    reminder.refresh_from_db()
    assert (reminder.status, reminder.last_error) == ("cancelled", "the incident is no longer red")
    time_machine.shift(60 * 60)
    assert tick() == "queued 0 reminder(s), 0 escalation(s)"
    # Back to red: the clock starts again from the new escalation.
    step(98)
    time_machine.shift(29 * 60)
    assert tick() == "queued 0 reminder(s), 0 escalation(s)"
    time_machine.shift(60)
    assert tick() == "queued 1 reminder(s), 0 escalation(s)"
