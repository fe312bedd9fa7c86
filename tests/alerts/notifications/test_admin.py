"""Channels in Django admin: bad settings refused with the field named, and "send test"."""

import pytest

from alerts.models import Notification, NotificationChannel
from tests.support import notify as notify_support
from tests.support.notify import mail_channel, reading, webhook

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module
ADD_URL = "/admin/alerts/notificationchannel/add/"
LIST_URL = "/admin/alerts/notificationchannel/"
pytestmark = pytest.mark.django_db


def form(**overrides):
    data = {"name": "team", "kind": "webhook", "enabled": "on", "url": "https://93.184.215.14/hook",
            "address_policy": "public", "levels": ["orange", "red"], "repeat_minutes": "30",
            "escalate_after_minutes": "0", "group_wait_seconds": "30", "group_interval_minutes": "5"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors(response):
    return response.context["adminform"].form.errors


def test_valid_channels_are_saved(admin_client, receiver):
    response = admin_client.post(ADD_URL, form())
    assert response.status_code == 302
    saved = NotificationChannel.objects.get()
    assert (saved.levels, saved.incident_kinds, saved.address_policy) == (["orange", "red"], [], "public")

    local = form(name="on-prem chat", kind="slack", url=receiver.url, address_policy="private",
                 incident_kinds=["disk"])
    assert admin_client.post(ADD_URL, local).status_code == 302
    mail = form(name="mail", kind="email", url="", recipients="ops@example.com\noncall@example.com")
    assert admin_client.post(ADD_URL, mail).status_code == 302
    assert NotificationChannel.objects.count() == 3


@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"url": "ftp://example.com/hook"}, "url", "Only http:// and https:// URLs are allowed, not ftp"),
        ({"url": "file:///etc/passwd"}, "url", "Only http:// and https:// URLs are allowed"),
        ({"url": ""}, "url", "Enter the URL to POST to."),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url", "link-local or cloud metadata address"),
        ({"url": "http://169.254.169.254/", "address_policy": "private"}, "url", "link-local or cloud metadata"),
        ({"url": "http://[fd00:ec2::254]/"}, "url", "link-local or cloud metadata address"),
        ({"url": "http://127.0.0.1:9000/hook"}, "url", "loopback or private network address"),
        ({"url": "http://localhost:9000/hook"}, "url", "resolves to"),
        ({"url": "http://10.0.0.8/hook", "kind": "dingtalk"}, "url", "refused unless private addresses are allowed"),
        ({"url": "https://no-such-host.invalid/hook", "kind": "wecom"}, "url", "does not resolve"),
        ({"kind": "email", "recipients": ""}, "recipients", "Enter at least one email address."),
        ({"kind": "email", "recipients": "ops@example.com, not-an-address"}, "recipients",
         "Not an email address: not-an-address."),
        ({"levels": None}, "levels", "Tick at least one level"),
        ({"repeat_minutes": "-5"}, "repeat_minutes", "greater than or equal to 0"),
        ({"address_policy": "everything"}, "address_policy", "Select a valid choice"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(admin_client, overrides, field, text):
    response = admin_client.post(ADD_URL, form(**overrides))
    assert response.status_code == 200
    assert text in " ".join(errors(response)[field])
    assert not NotificationChannel.objects.exists()
    assert text.split(":")[0] in response.content.decode()  # shown on the page, next to the field


def test_refusal_says_which_setting_allows_the_address(admin_client):
    response = admin_client.post(ADD_URL, form(url="http://192.168.1.20/hook"))
    assert errors(response)["url"] == [
        "The host 192.168.1.20 is a loopback or private network address, refused unless private addresses are "
        'allowed. To use it anyway, set "Addresses allowed" to "Also loopback and private networks (an on-premise '
        'server)".']


def test_new_channel_form_starts_with_red_ticked(admin_client):
    html = admin_client.get(ADD_URL).content.decode()
    assert 'value="red" id="id_levels_2" checked' in html and 'value="orange" id="id_levels_1" checked' not in html


def test_metadata_address_needs_the_explicit_any_policy(admin_client):
    response = admin_client.post(ADD_URL, form(url="http://169.254.169.254/hook", address_policy="any"))
    assert response.status_code == 302


def test_send_test_webhook_and_email(admin_client, receiver, smtp):
    hook = webhook(receiver.url, name="hook", enabled=False)  # tried before it is switched on
    mail = mail_channel("ops@example.com", name="mail")
    response = admin_client.post(LIST_URL, {"action": "send_test", "_selected_action": [hook.pk, mail.pk]},
                                 follow=True)
    page = response.content.decode()
    assert "Test to hook: sent: to hook on try 1" in page and "Test to mail: sent: to mail on try 1" in page
    assert receiver.requests[0].body["subject"] == "[TEST] glmadmin notification test for hook"
    assert smtp.messages[0][1]["Subject"] == "[TEST] glmadmin notification test for mail"
    assert set(Notification.objects.values_list("reason", "status")) == {("test", "sent")}


def test_send_test_reports_a_failure_without_retrying(admin_client, receiver):
    hook = webhook(receiver.url, name="hook")
    receiver.reply(403, '{"message": "invalid token"}')
    page = admin_client.post(LIST_URL, {"action": "send_test", "_selected_action": [hook.pk]},
                             follow=True).content.decode()
    assert "Test to hook: failed: HTTP 403: {&quot;message&quot;: &quot;invalid token&quot;}" in page
    assert Notification.objects.get().status == "failed"
    hook.refresh_from_db()
    assert hook.consecutive_failures == 1 and "HTTP 403" in hook.last_error


def test_history_pages(admin_client, receiver, django_capture_on_commit_callbacks):
    webhook(receiver.url, name="hook")
    with django_capture_on_commit_callbacks(execute=True):
        reading(98)
    notification = Notification.objects.get()
    incident_page = admin_client.get(f"/admin/alerts/incident/{notification.incident_id}/change/")
    assert incident_page.status_code == 200 and "hook" in incident_page.content.decode()
    assert admin_client.get("/admin/alerts/notification/").status_code == 200
    assert admin_client.get(f"/admin/alerts/notification/{notification.pk}/change/").status_code == 200

    response = admin_client.post("/admin/alerts/notification/",
                                 {"action": "retry_now", "_selected_action": [notification.pk]}, follow=True)
    assert "Queued 1 notification(s) for another try." in response.content.decode()
