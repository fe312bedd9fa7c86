"""The dashboard's notifications card: channel health, and what was sent about each incident."""

import pytest

from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work
from tests.support.processes import free_port

receiver = notify_support.receiver  # the real webhook receiver, as a fixture of this module
pytestmark = pytest.mark.django_db


def test_without_channels_it_says_how_to_add_one(admin_client):
    html = admin_client.get("/").content.decode()
    assert "<h2>Notifications</h2>" in html
    assert "No channel yet" in html and "/admin/alerts/notificationchannel/add/" in html


def test_history_per_incident(admin_client, receiver, django_capture_on_commit_callbacks, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(receiver.url, name="team chat")
    webhook(f"http://127.0.0.1:{free_port()}/", name="dead hook")
    for percent in (93, 98):
        with django_capture_on_commit_callbacks(execute=True):
            reading(percent)
        work()

    html = " ".join(admin_client.get("/").content.decode().split())
    assert "Sent about recent incidents" in html and "Disk data (/data)" in html
    assert html.count("Opened → team chat: <strong>sent</strong>") == 1
    assert html.count("Escalated → team chat: <strong>sent</strong>") == 1
    assert "Opened → dead hook: retrying (1 try so far)" in html and "ConnectError" in html
