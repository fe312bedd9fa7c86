"""Each kind of channel, as its receiver sees it: body shape, headers, signatures, and what counts as refused."""

import base64
import hashlib
import hmac

import pytest

from alerts.models import Notification
from alerts.notifications import planner
from alerts.notifications.transports import TRANSPORTS
from alerts.tasks import deliver_notification
from tests.support import notify as notify_support
from tests.support.notify import mail_channel, reading, webhook, work

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module
pytestmark = pytest.mark.django_db


@pytest.fixture
def red(django_capture_on_commit_callbacks, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)

    def fire():
        with django_capture_on_commit_callbacks(execute=True):
            reading(98)
        return work()

    return fire


def test_every_channel_kind_has_a_transport():
    from alerts.models import NotificationChannel

    assert set(TRANSPORTS) == set(NotificationChannel.Kind.values)


def test_generic_webhook_is_signed(red, receiver):
    webhook(receiver.url, secret="s3cret")
    red()
    request, = receiver.requests
    expected = hmac.new(b"s3cret", request.raw, hashlib.sha256).hexdigest()
    assert request.headers["X-Glmadmin-Signature"] == f"sha256={expected}"
    assert request.headers["X-Glmadmin-Reason"] == "opened"
    body = request.body
    assert body["subject"] == "[RED] Disk data (/data): opened" and body["level"] == "red"
    assert body["incident"]["level"] == "red" and body["event"] == {
        "kind": "opened", "at": "2026-03-01T10:00:00+00:00", "level": "red", "value": 98}


def test_slack_compatible_shape(red, receiver):
    webhook(receiver.url, kind="slack")
    red()
    assert receiver.requests[0].body == {"text": "*[RED] Disk data (/data): opened*\n"
                                                 "Disk data (/data): disk at 98.0 % on /data.\n"
                                                 "Level red since 2026-03-01 10:00:00 UTC.\n"
                                                 "New inference requests are paused while it is red "
                                                 "(answered 503, requests_paused)."}


def test_wecom_shape_and_refusal(red, receiver):
    webhook(receiver.url + "?key=robot-key", kind="wecom")
    receiver.reply(200, '{"errcode": 93000, "errmsg": "invalid webhook url"}')
    assert red() == ["retry: robot refused: errcode 93000: invalid webhook url"]
    request, = receiver.requests
    assert request.query == {"key": ["robot-key"]}
    assert request.body["msgtype"] == "text"
    assert request.body["text"]["content"].startswith("[RED] Disk data (/data): opened\nDisk data (/data): disk at")


def test_dingtalk_markdown_and_signature(red, receiver, time_machine):
    webhook(receiver.url + "?access_token=tok", kind="dingtalk", secret="SECabc")
    red()
    request, = receiver.requests
    timestamp = request.query["timestamp"][0]
    assert timestamp == "1772359200000"  # milliseconds at the frozen clock
    digest = hmac.new(b"SECabc", f"{timestamp}\nSECabc".encode(), hashlib.sha256).digest()
    assert request.query["sign"] == [base64.b64encode(digest).decode()]
    assert request.query["access_token"] == ["tok"]
    markdown = request.body["markdown"]
    assert request.body["msgtype"] == "markdown" and markdown["title"] == "[RED] Disk data (/data): opened"
    assert markdown["text"].startswith("#### [RED] Disk data (/data): opened\n\nDisk data (/data): disk at 98.0 %")


def test_robot_answer_that_is_not_json_is_a_failure(receiver):
    hook = webhook(receiver.url, kind="dingtalk")
    receiver.reply(200, "<html>proxy login</html>")
    notification = planner.plan_channel_test(hook)
    assert deliver_notification.apply(args=[notification.pk]).get() == (
        "failed: unexpected answer (not JSON): <html>proxy login</html>")


def test_email_headers_and_body(red, smtp, settings):
    settings.DEFAULT_FROM_EMAIL = "alerts@gpu-box.example"
    settings.PUBLIC_URL = "https://ops.example.com"
    mail_channel("ops@example.com")
    red()
    (recipients, message), = smtp.messages
    notification = Notification.objects.get()
    assert recipients == ["ops@example.com"] and message["From"] == "alerts@gpu-box.example"
    assert message["Message-ID"] == f"<{notification.key}@glmadmin>"
    assert message["X-Glmadmin-Reason"] == "opened"
    assert message.get_content().splitlines() == [
        "Disk data (/data): disk at 98.0 % on /data.",
        "Level red since 2026-03-01 10:00:00 UTC.",
        "New inference requests are paused while it is red (answered 503, requests_paused).",
        "Dashboard: https://ops.example.com/",
    ]
