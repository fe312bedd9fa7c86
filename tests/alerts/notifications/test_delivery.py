"""Delivery: retries with back-off, one success per message, channel health, order, a worker killed mid-send."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import DeliveryAttempt, Notification, NotificationChannel
from alerts.notifications import delivery, planner
from alerts.tasks import deliver_notification, redeliver_stalled_notifications
from tests.support import notify as notify_support
from tests.support.notify import mail_channel, reading, webhook, work
from tests.support.processes import ROOT, free_port, subprocess_env

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module
T0 = "2026-03-01 10:00Z"


@pytest.fixture
def red_incident(django_capture_on_commit_callbacks):
    def fire(percent=98):
        with django_capture_on_commit_callbacks(execute=True):
            reading(percent)

    return fire


def attempts(notification) -> list[tuple[str, str]]:
    return list(notification.attempts.values_list("status", "error"))


@pytest.mark.django_db
def test_failing_webhook_is_retried_with_backoff_then_delivered_once(red_incident, receiver, smtp, time_machine):
    time_machine.move_to(T0, tick=False)
    hook = webhook(receiver.url)
    mail_channel()
    receiver.reply(500, "down for maintenance", times=2)
    red_incident()

    work()
    # The mail went out at once: the failing webhook holds up no other channel.
    assert len(smtp.messages) == 1 and len(receiver.requests) == 1
    notification = Notification.objects.get(channel=hook)
    assert (notification.status, notification.attempt_count) == ("pending", 1)
    assert notification.next_attempt_at == timezone.now() + timedelta(seconds=30)

    work()  # not due yet: nothing is sent
    # Nor by an early copy of the task (the sweep's, a redelivered message): the back-off holds.
    assert deliver_notification.apply(args=[notification.pk]).get() == "skipped: not due, or another worker has it"
    time_machine.shift(29)
    work()
    assert len(receiver.requests) == 1

    time_machine.shift(1)
    work()  # second try fails; the next waits twice as long
    notification.refresh_from_db()
    assert notification.next_attempt_at == timezone.now() + timedelta(seconds=60)
    time_machine.shift(60)
    assert work() == ["sent: to webhook on try 3"]

    notification.refresh_from_db()
    assert notification.status == "sent" and notification.sent_at == timezone.now()
    assert attempts(notification) == [("failed", "HTTP 500: down for maintenance")] * 2 + [("ok", "")]
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
    assert keys == {str(notification.key)} and len(receiver.requests) == 3

    # Every later copy of the task, and the sweep, leave a sent message alone.
    assert deliver_notification.apply(args=[notification.pk]).get() == "skipped: already sent"
    time_machine.shift(3600)
    redeliver_stalled_notifications.apply()
    work()
    assert len(receiver.requests) == 3 and notification.attempts.count() == 3


@pytest.mark.django_db
def test_channel_that_keeps_failing_is_marked_and_shown_then_recovers(red_incident, receiver, admin_client,
                                                                      time_machine):
    time_machine.move_to(T0, tick=False)
    hook = webhook(receiver.url, name="team-hook")
    receiver.reply(502, "bad gateway", times=3)
    red_incident()
    for wait in (0, 30, 60):
        time_machine.shift(wait)
        work()
        hook.refresh_from_db()
    assert (hook.consecutive_failures, hook.is_healthy) == (3, False)
    assert hook.last_error == "HTTP 502: bad gateway"

    html = admin_client.get("/").content.decode()
    assert "<strong>Failing:</strong>" in html and "team-hook" in html
    assert 'class="channel-failing"' in html and "3 failed tries in a row: HTTP 502: bad gateway" in html

    time_machine.shift(120)
    work()
    hook.refresh_from_db()
    assert hook.is_healthy and hook.last_success_at == timezone.now()
    html = admin_client.get("/").content.decode()
    assert "Failing:" not in html and 'class="channel-healthy"' in html
    assert "after 4 tries" in html


@pytest.mark.django_db
def test_gives_up_after_the_last_try(red_incident, receiver, time_machine):
    time_machine.move_to(T0, tick=False)
    webhook(receiver.url)
    receiver.reply(503, times=10)
    red_incident()
    for _ in range(10):
        work()
        time_machine.shift(3600)
    notification = Notification.objects.get()
    assert (notification.status, notification.attempt_count) == ("failed", delivery.MAX_ATTEMPTS)
    assert len(receiver.requests) == delivery.MAX_ATTEMPTS == 6


@pytest.mark.django_db
def test_permanent_errors_are_not_retried(red_incident, receiver, smtp, time_machine):
    time_machine.move_to(T0, tick=False)
    webhook(receiver.url)
    mail_channel("nobody@refused.example")
    receiver.reply(404, "no such hook")
    red_incident()
    work()
    time_machine.shift(3600)
    work()
    by_kind = {n.channel.kind: n for n in Notification.objects.select_related("channel")}
    assert (by_kind["webhook"].status, by_kind["webhook"].last_error) == ("failed", "HTTP 404: no such hook")
    assert by_kind["email"].status == "failed" and "nobody@refused.example" in by_kind["email"].last_error
    assert len(receiver.requests) == 1 and smtp.messages == []


@pytest.mark.django_db
def test_unreachable_receivers_are_retried(red_incident, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    webhook(f"http://127.0.0.1:{free_port()}/hook")
    mail_channel()
    red_incident()
    work()
    for notification in Notification.objects.all():
        assert notification.status == "pending" and notification.attempt_count == 1
        assert "ConnectError" in notification.last_error or "Connection refused" in notification.last_error


@pytest.mark.django_db
def test_messages_about_one_incident_arrive_in_order(red_incident, receiver, time_machine):
    time_machine.move_to(T0, tick=False)
    webhook(receiver.url)
    receiver.reply(500, times=1)
    red_incident(98)
    work()  # "opened" fails, retried in 30 s
    red_incident(10)
    assert work() == ["deferred: an earlier message about this incident is not out yet"]
    time_machine.shift(30)
    work()  # the "opened" goes first...
    time_machine.shift(5)
    work()  # ...then the "resolved"
    assert [r.body["reason"] for r in receiver.requests] == ["opened", "opened", "resolved"]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}


@pytest.mark.django_db
def test_two_copies_of_the_task_send_once(red_incident, receiver):
    webhook(receiver.url)
    red_incident()
    pk = Notification.objects.get().pk
    results = [deliver_notification.apply(args=[pk]).get() for _ in range(3)]
    assert results == ["sent: to webhook on try 1", "skipped: already sent", "skipped: already sent"]
    assert len(receiver.requests) == 1


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_send_redelivers_once(receiver, time_machine):
    webhook(receiver.url)
    reading(98)  # autocommit: planned (and queued) at once
    notification = Notification.objects.get()
    release = receiver.hold()
    code = f"from alerts.tasks import deliver_notification as d; d.apply(args=[{notification.pk}])"
    worker = subprocess.Popen([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=subprocess_env())
    try:
        assert receiver.arrived.wait(60), "the worker never sent the request"
    finally:
        worker.kill()  # SIGKILL while the request is in flight: no chance to record anything
        worker.wait()
    release.set()

    notification.refresh_from_db()
    assert (notification.status, notification.attempt_count) == ("sending", 1)
    assert attempts(notification) == [("sending", "")]
    # While its lease runs, nobody else takes it over (the worker might only be slow).
    assert deliver_notification.apply(args=[notification.pk]).get() == "skipped: not due, or another worker has it"
    assert delivery.stalled() == []

    time_machine.move_to(notification.claimed_until + timedelta(seconds=1), tick=False)
    assert delivery.stalled() == [notification.pk]
    assert redeliver_stalled_notifications.apply().get() == "queued 1 stalled notification(s)"
    assert deliver_notification.apply(args=[notification.pk]).get() == "sent: to webhook on try 2"

    notification.refresh_from_db()
    assert notification.status == "sent"
    assert attempts(notification) == [("interrupted", "the worker stopped during this attempt"), ("ok", "")]
    # Both requests carry the same key, so a receiver that did get the first can drop the second.
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [str(notification.key)] * 2
    assert deliver_notification.apply(args=[notification.pk]).get() == "skipped: already sent"
    assert len(receiver.requests) == 2


@pytest.mark.django_db
def test_lost_queue_message_is_found_by_the_sweep(receiver, time_machine):
    time_machine.move_to(T0, tick=False)
    hook = webhook(receiver.url)
    notification = planner.plan_channel_test(hook)  # planned, but pretend its task never reached a worker
    assert delivery.stalled() == []
    time_machine.shift(delivery.STALL_GRACE.total_seconds())
    assert delivery.stalled() == [notification.pk]


@pytest.mark.django_db
def test_switched_off_channel_gets_nothing_more(red_incident, receiver):
    hook = webhook(receiver.url)
    red_incident()
    NotificationChannel.objects.filter(pk=hook.pk).update(enabled=False)
    assert work() == ["cancelled: the channel was switched off"]
    assert receiver.requests == [] and not DeliveryAttempt.objects.exists()
