"""The dashboard's cards in the live messages: every card to open dashboards, none to other pages, and none
drawn at all while no dashboard is open (a publish then reads only what the status bar needs)."""

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from glmadmin import live
from glmadmin.asgi import application
from monitoring import dashboard
from monitoring.disk_check import simulate
from tests.support.websocket import ORIGIN, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def drawn(monkeypatch):
    """The names of the cards drawn, in order."""
    names = []
    real = dashboard.render

    def render(name, current, request=None):
        names.append(name)
        return real(name, current, request)
    monkeypatch.setattr(dashboard, "render", render)
    return names


async def test_cards_go_to_open_dashboards_only_and_are_drawn_only_for_them(django_user_model, drawn):
    await database_sync_to_async(live.publish)(force=True)
    assert drawn == []  # no dashboard open: nothing drawn

    cookie = await session_cookie(django_user_model)
    board = WebsocketCommunicator(application, "/ws/live/?page=dashboard", headers=[ORIGIN, cookie])
    chat = WebsocketCommunicator(application, "/ws/live/", headers=[ORIGIN, cookie])
    assert (await board.connect())[0] and (await chat.connect())[0]
    first = await board.receive_json_from(timeout=30)
    assert set(dashboard.CARDS) <= set(first["html"]) and "statusbar" in first["html"]
    assert set((await chat.receive_json_from(timeout=30))["html"]) == {"statusbar", "alerts"}

    await database_sync_to_async(simulate)("orange")  # publishes: an incident opened
    changed = await board.receive_json_from(timeout=30)
    assert 'data-paused="false"' in changed["html"]["overview"] and "tag-orange" in changed["html"]["overview"]
    assert "data-open-incident=" in changed["html"]["incidents"]
    assert 'value="live-placeholder"' in changed["html"]["incidents"]  # live.js puts the viewer's token there
    assert 'data-needs="alerts.change_incident"' in changed["html"]["incidents"]
    assert set((await chat.receive_json_from(timeout=30))["html"]) == {"statusbar", "alerts"}
    await board.disconnect()
    await chat.disconnect()


async def test_a_publish_that_shows_nothing_new_sends_nothing(django_user_model):
    cookie = await session_cookie(django_user_model)
    board = WebsocketCommunicator(application, "/ws/live/?page=dashboard", headers=[ORIGIN, cookie])
    assert (await board.connect())[0]
    await board.receive_json_from(timeout=30)
    assert await database_sync_to_async(live.publish)() is True  # the first: no digest yet
    await board.receive_json_from(timeout=30)
    assert await database_sync_to_async(live.publish)() is False
    assert await board.receive_nothing(timeout=0.5)
    await board.disconnect()


def test_every_permission_a_card_marks_is_one_the_page_reports():
    """live.js removes whatever needs a permission missing from the viewer's list, and the list holds only NEEDS:
    the thresholds' edit link, marked with one NEEDS lacked, vanished for everyone at the first live update."""
    import re
    from pathlib import Path

    from monitoring import dashboard

    marked = {need for path in Path("templates").rglob("*.html")
              for value in re.findall(r'data-needs="([^"{]+)"', path.read_text()) for need in value.split()}
    assert "monitoring.change_watchedfilesystem" in marked
    assert marked <= set(dashboard.NEEDS), marked - set(dashboard.NEEDS)


def test_the_same_state_draws_the_same_cards_a_while_later(tmp_path, monkeypatch, time_machine):
    """Ages ("checked 20 s ago") are counted in the browser: cards that wrote them changed every second, so
    every publish sent every open dashboard again (and "nothing is sent twice" failed on a slow machine)."""
    from datetime import timedelta

    from django.utils import timezone

    from monitoring import tasks
    from monitoring.models import CleanupPolicy, CleanupRun, WatchedFilesystem
    from monitoring.telemetry.rules import evaluate as rules
    from tests.support import fake_nvml
    from tests.support.notify import mail_channel

    start = timezone.now()
    time_machine.move_to(start, tick=False)
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, util=37)]))
    tasks.sample_telemetry()
    WatchedFilesystem.objects.create(path=str(tmp_path), label="scratch", last_checked_at=start, last_percent=12.5)
    CleanupPolicy.objects.create(name="hf", root=str(tmp_path), max_size="1G", last_size_bytes=10, last_size_at=start)
    CleanupRun.objects.create(policy_name="hf", trigger="manual", status="done", started_at=start, finished_at=start)
    mail_channel(last_success_at=start)

    before = live.message(page="dashboard")["html"]
    time_machine.move_to(start + timedelta(seconds=20), tick=False)
    after = live.message(page="dashboard")["html"]
    assert [name for name, html in after.items() if html != before[name]] == []
    for card in ("telemetry", "overview", "filesystems", "cleanup", "notifications"):
        assert f'<time datetime="{start.isoformat()}" data-ago' in after[card], card  # the ages are there
