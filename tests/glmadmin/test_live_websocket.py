import pytest
from channels import consumer as channels_consumer
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator

from glmadmin.asgi import application
from monitoring.disk_check import simulate
from tests.support.websocket import ORIGIN, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)
def communicator(*headers):
    return WebsocketCommunicator(application, "/ws/live/", headers=list(headers))


async def test_anonymous_connection_is_refused():
    ws = communicator(ORIGIN)
    connected, _ = await ws.connect()
    assert connected is False


async def test_foreign_origin_is_refused_even_with_a_session(django_user_model):
    cookie = await session_cookie(django_user_model)
    ws = communicator((b"origin", b"https://evil.example"), cookie)
    connected, _ = await ws.connect()
    assert connected is False


async def test_missing_origin_is_refused(django_user_model):
    cookie = await session_cookie(django_user_model)
    connected, _ = await communicator(cookie).connect()
    assert connected is False


async def test_snapshot_first_then_changes(django_user_model):
    cookie = await session_cookie(django_user_model)
    ws = communicator(ORIGIN, cookie)
    connected, _ = await ws.connect()
    assert connected
    first = await ws.receive_json_from(timeout=30)
    assert first["type"] == "state"
    assert first["state"]["incidents"] == []
    assert "DISK:" in first["html"]["statusbar"]

    await database_sync_to_async(simulate)("orange")
    changed = await ws.receive_json_from(timeout=30)
    assert [i["level"] for i in changed["state"]["incidents"]] == ["orange"]
    assert "banner-orange" in changed["html"]["alerts"]

    await database_sync_to_async(simulate)(None)
    cleared = await ws.receive_json_from(timeout=30)
    assert cleared["state"]["incidents"] == []
    assert cleared["html"]["alerts"].strip() == ""
    await ws.disconnect()


async def test_reconnecting_page_gets_current_state(django_user_model):
    cookie = await session_cookie(django_user_model)
    await database_sync_to_async(simulate)("red")
    ws = communicator(ORIGIN, cookie)
    assert (await ws.connect())[0]
    first = await ws.receive_json_from(timeout=30)
    assert [i["level"] for i in first["state"]["incidents"]] == ["red"]
    assert first["state"]["admission"]["paused"] is True
    assert "New inference requests are paused" in first["html"]["alerts"]
    await ws.disconnect()


async def test_every_open_page_gets_the_change(django_user_model):
    cookie = await session_cookie(django_user_model)
    pages = [communicator(ORIGIN, cookie) for _ in range(3)]
    for ws in pages:
        assert (await ws.connect())[0]
        await ws.receive_json_from(timeout=30)  # the snapshot
    await database_sync_to_async(simulate)("yellow")
    for ws in pages:
        msg = await ws.receive_json_from(timeout=30)
        assert "toast" in msg["html"]["alerts"]
        await ws.disconnect()


async def test_engine_state_changes_are_pushed(django_user_model):
    from inference import supervisor
    from inference.models import Engine

    cookie = await session_cookie(django_user_model)
    engine = await database_sync_to_async(Engine.objects.create)(name="glm", port=8001, model="/m",
                                                                 served_model_name="glm")
    ws = communicator(ORIGIN, cookie)
    assert (await ws.connect())[0]
    first = await ws.receive_json_from(timeout=30)
    assert first["state"]["engines"] == [{"name": "glm", "state": "stopped"}]
    await database_sync_to_async(supervisor.transition)(engine, "starting", "started pid 1", pid=1)
    changed = await ws.receive_json_from(timeout=30)
    assert changed["state"]["engines"] == [{"name": "glm", "state": "starting"}]
    assert "ENGINE: 0/1 ready" in changed["html"]["statusbar"]
    await ws.disconnect()


async def test_a_push_reaches_the_page_without_a_trip_to_the_database_thread(django_user_model, monkeypatch):
    """Channels' dispatch closes stale database connections before each message, in its one database thread:
    with 1,000 pages open every push queued there once per page. A push needs no query, so it skips that."""
    cookie = await session_cookie(django_user_model)
    ws = communicator(ORIGIN, cookie)
    assert (await ws.connect())[0]
    await ws.receive_json_from(timeout=30)  # the snapshot
    trips = []

    async def counted():
        trips.append(1)

    monkeypatch.setattr(channels_consumer, "aclose_old_connections", counted)
    await database_sync_to_async(simulate)("orange")
    changed = await ws.receive_json_from(timeout=30)
    assert [i["level"] for i in changed["state"]["incidents"]] == ["orange"]
    assert trips == []
    await ws.disconnect()
