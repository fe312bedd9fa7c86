"""Grouping: changes of one host's incidents that come close together reach each channel as one message; a
single incident waits no more than the group wait, later calm changes are batched at the group interval, and
grouped messages are retried and swept like any other. Real SMTP and webhook receivers; time from time-machine."""

from datetime import timedelta

import pytest

from alerts.models import DeliveryAttempt, Notification
from alerts.notifications import delivery
from alerts.tasks import deliver_notification, redeliver_stalled_notifications
from inference import engine_incidents
from inference.models import Engine
from tests.support import notify as notify_support
from tests.support.notify import mail_channel, reading, webhook, work

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module
pytestmark = pytest.mark.django_db


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    def run(step, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return step(*args, **kwargs)

    return run


@pytest.fixture
def clock(time_machine, settings):
    settings.GLMADMIN_HOST_NAME = "gpu-a"
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    return time_machine


@pytest.fixture
def channels(receiver):
    """Two channels as made in the admin: group wait 30 s, group interval 5 min."""
    return (webhook(receiver.url, group_wait_seconds=30, group_interval_minutes=5),
            mail_channel(levels=["yellow", "orange", "red"], group_wait_seconds=30, group_interval_minutes=5))


def engine(name, host="gpu-a", port=8001):
    return Engine.objects.create(name=name, host=host, port=port, model="/m", served_model_name=name)


def titles(items) -> list[str]:
    return [item["incident"]["title"] for item in items]


def test_five_incidents_within_30_s_on_one_host_are_one_message_per_channel(committed, clock, channels, receiver,
                                                                               smtp, admin_client):
    engines = [engine("glm", port=8001), engine("qwen", port=8002), engine("other-host", host="gpu-b", port=8003)]
    committed(reading, 93, path="/data")  # 10:00:00 (orange: a red disk would hold back the engines' failures)
    clock.shift(5)
    committed(engine_incidents.open_failed, engines[0], "exited")
    clock.shift(5)
    committed(engine_incidents.open_failed, engines[2], "exited")  # host B: a group of its own
    clock.shift(5)
    committed(reading, 94, path="/models")
    clock.shift(7)
    committed(reading, 86, path="/scratch")
    clock.shift(7)
    committed(engine_incidents.open_failed, engines[1], "exited")  # 10:00:29
    assert work() == [] and receiver.requests == [] and smtp.messages == []  # the group waits for more

    clock.shift(1)  # 10:00:30: host A's group closes
    work()
    five = ["Disk data (/data)", "Engine glm failed", "Disk data (/models)", "Disk data (/scratch)",
            "Engine qwen failed"]
    (hook,) = receiver.requests
    assert hook.body["reason"] == "group" and hook.body["host"] == "gpu-a" and hook.body["level"] == "orange"
    assert titles(hook.body["items"]) == five
    assert [item["reason"] for item in hook.body["items"]] == ["opened"] * 5
    (recipients, mail), = smtp.messages
    assert mail["Subject"] == f"[ORANGE] 5 changes on gpu-a: {', '.join(five)}"
    body = mail.get_content()
    assert "5 changes on host gpu-a:" in body and "- [ORANGE] Engine qwen failed: opened" in body
    assert "disk at 94.0 % on /models" in body

    clock.shift(10)  # 10:00:40: host B's group, of one: the engine's message as if sent alone
    work()
    assert receiver.requests[1].body["reason"] == "opened"
    assert receiver.requests[1].body["incident"]["title"] == "Engine other-host failed"
    assert smtp.messages[1][1]["Subject"] == "[ORANGE] Engine other-host failed: opened"
    assert Notification.objects.count() == 4 and set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    # The dashboard lists the grouped message under each of the five incidents it told about.
    html = " ".join(admin_client.get("/").content.decode().split())
    assert html.count("Grouped changes (one host) → webhook: <strong>sent</strong>") == 5
    assert html.count("Opened → webhook: <strong>sent</strong>") == 1  # host B's, alone


def test_a_single_incident_waits_the_group_wait_and_no_longer(committed, clock, channels, receiver):
    committed(reading, 98)
    clock.shift(29)
    assert work() == []
    clock.shift(1)
    work()
    (alone,) = receiver.requests
    assert alone.body["subject"] == "[RED] Disk data (/data): opened" and "items" not in alone.body


def test_later_calm_changes_wait_for_the_group_interval_but_news_does_not(committed, clock, channels, receiver):
    for path in ("/a", "/b", "/c"):
        committed(reading, 93, path=path)
    clock.shift(30)
    work()  # 10:00:30: the first message, three openings
    assert len(receiver.requests) == 1

    clock.shift(30)
    committed(reading, 10, path="/a")  # 10:01:00: resolves are batched until 10:05:30
    clock.shift(60)
    committed(reading, 10, path="/b")
    clock.shift(120)  # 10:04:00
    assert work() == []
    committed(reading, 98, path="/c")  # red: news, it waits only the group wait and takes the batch along
    clock.shift(29)
    assert work() == []
    clock.shift(1)  # 10:04:30
    work()
    batch = receiver.requests[1].body
    assert [(i["reason"], i["incident"]["source"]) for i in batch["items"]] == [
        ("resolved", "disk:/a"), ("resolved", "disk:/b"), ("escalated", "disk:/c")]

    committed(reading, 10, path="/c")  # 10:04:30: a calm change again, held until 10:09:30
    clock.shift(299)
    assert work() == []
    clock.shift(1)
    work()
    assert receiver.requests[2].body["subject"] == "[RESOLVED] Disk data (/c)"
    assert len(receiver.requests) == 3


def test_a_grouped_message_is_retried_with_the_same_words_and_later_changes_start_a_new_group(
        committed, clock, channels, receiver):
    receiver.reply(500, "down for maintenance")
    committed(reading, 98, path="/a")
    committed(reading, 93, path="/b")
    clock.shift(30)
    work()  # the first try fails: retried in 30 s
    group = Notification.objects.get(channel__kind="webhook", items__incident__source="disk:/a")
    assert (group.status, group.attempt_count) == ("pending", 1)

    clock.shift(10)
    committed(reading, 86, path="/c")  # the failing group is closed: this one starts the next group
    clock.shift(20)
    work()  # 10:01:00: the retry goes out
    clock.shift(10)
    work()  # 10:01:10: the next group
    bodies = [r.body for r in receiver.requests]
    assert bodies[0] == bodies[1] and titles(bodies[1]["items"]) == ["Disk data (/a)", "Disk data (/b)"]
    assert bodies[2]["subject"] == "[YELLOW] Disk data (/c): opened"
    assert receiver.requests[0].headers["Idempotency-Key"] == receiver.requests[1].headers["Idempotency-Key"]
    assert list(group.attempts.values_list("status", flat=True)) == [DeliveryAttempt.Status.FAILED,
                                                                     DeliveryAttempt.Status.OK]
    assert deliver_notification.apply(args=[group.pk]).get() == "skipped: already sent"


def test_a_group_whose_task_was_lost_is_found_by_the_sweep(committed, clock, channels, receiver):
    committed(reading, 98)
    group = Notification.objects.get(channel__kind="webhook")
    assert group.next_attempt_at == group.created_at + timedelta(seconds=30)
    clock.shift(30 + delivery.STALL_GRACE.total_seconds() - 1)
    assert delivery.stalled() == []  # still collecting, then just due: its own task is on its way
    clock.shift(1)
    assert group.pk in delivery.stalled()
    assert redeliver_stalled_notifications.apply().get() == "queued 2 stalled notification(s)"
    work()
    assert len(receiver.requests) == 1


def test_a_group_holds_back_a_message_about_an_incident_an_earlier_message_has_not_delivered(
        committed, clock, receiver):
    webhook(receiver.url, group_wait_seconds=30)
    receiver.reply(500, times=4)
    committed(reading, 98)  # 10:00:00
    at(clock, "00:30")
    work()  # the opening fails: tried again at 10:01:00, 10:02:00, 10:04:00, 10:08:00
    at(clock, "00:31")
    committed(reading, 10)  # its resolve: a new group, closing one interval after the first message (10:05:30)
    for minute in ("01:00", "02:00", "04:00"):
        at(clock, minute)
        work()
    at(clock, "05:30")
    assert work() == ["deferred: an earlier message about this incident is not out yet"]
    at(clock, "08:00")
    assert work() == ["sent: to webhook on try 5"]
    at(clock, "08:05")
    assert work() == ["sent: to webhook on try 1"]
    assert [r.body["reason"] for r in receiver.requests] == ["opened"] * 5 + ["resolved"]


def at(clock, minutes_seconds: str) -> None:
    clock.move_to(f"2026-03-01 10:{minutes_seconds}Z", tick=False)
