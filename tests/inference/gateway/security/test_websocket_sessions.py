"""A websocket lasts as long as the session it was opened in: logging out, the session's expiry and the
user's deactivation close the chat and live sockets (code 4401), and the chat acts on no message after.

The real ASGI stack (origin check, session cookie, consumers) with channels' communicator, and the real
Redis channel layer that carries the logout to the sockets.
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from glmadmin.asgi import application
from glmadmin.consumers import LiveConsumer
from tests.support.websocket import ORIGIN

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-sessions-12345"
CLOSED = {"type": "websocket.close", "code": 4401}


@database_sync_to_async
def signed_in(django_user_model, username="viewer") -> Client:
    user = django_user_model.objects.filter(username=username).first()
    if user is None:
        user = django_user_model.objects.create_user(username, password=PASSWORD)
    client = Client()
    client.force_login(user)  # client.login() passes no request, which the login throttling (axes) requires
    return client


def cookie_of(client: Client) -> tuple[bytes, bytes]:
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


async def opened(path: str, client: Client) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, path, headers=[ORIGIN, cookie_of(client)])
    assert (await ws.connect(timeout=30))[0]
    await ws.receive_json_from(timeout=30)  # the first message: the chat's models, the live snapshot
    return ws


async def test_logging_out_closes_the_sockets_of_that_session_only(django_user_model):
    leaving, staying = await signed_in(django_user_model), await signed_in(django_user_model)
    chat, live = await opened("/ws/chat/", leaving), await opened("/ws/live/", leaving)
    other = await opened("/ws/chat/", staying)  # the same user in another browser
    response = await database_sync_to_async(leaving.post)("/logout/")
    assert response.status_code == 302
    assert await chat.receive_output(timeout=30) == CLOSED
    assert await live.receive_output(timeout=30) == CLOSED
    # The other session's socket still acts on messages (an unknown type is answered, not closed).
    await other.send_json_to({"type": "ping"})
    assert (await other.receive_json_from(timeout=30))["code"] == "unknown_type"
    await other.disconnect()


async def test_a_chat_message_after_the_session_expired_is_not_acted_on(django_user_model):
    client = await signed_in(django_user_model)
    chat = await opened("/ws/chat/", client)
    key = client.session.session_key
    await database_sync_to_async(Session.objects.filter(pk=key).update)(expire_date=timezone.now() - timedelta(1))
    await chat.send_json_to({"type": "send", "model": "demo", "messages": [{"role": "user", "content": "hi"}]})
    assert await chat.receive_output(timeout=30) == CLOSED


async def test_deactivating_the_user_closes_their_sockets(django_user_model):
    client = await signed_in(django_user_model)
    chat, live = await opened("/ws/chat/", client), await opened("/ws/live/", client)

    @database_sync_to_async
    def deactivate():
        user = django_user_model.objects.get(username="viewer")
        user.is_active = False
        user.save()

    await deactivate()
    assert await chat.receive_output(timeout=30) == CLOSED
    assert await live.receive_output(timeout=30) == CLOSED


@pytest.mark.parametrize("ending", ["expiry", "new password"])
async def test_a_live_socket_closes_at_its_next_session_check(django_user_model, monkeypatch, ending):
    # Nothing announces an expiry or a password changed elsewhere: the socket's periodic check finds it.
    monkeypatch.setattr(LiveConsumer, "session_recheck_s", 0.05)
    client = await signed_in(django_user_model)
    live = await opened("/ws/live/", client)

    @database_sync_to_async
    def end():
        if ending == "expiry":
            Session.objects.filter(pk=client.session.session_key).update(expire_date=timezone.now())
        else:
            user = django_user_model.objects.get(username="viewer")
            user.set_password("another-pw-98765")
            user.save()

    assert await live.receive_nothing(timeout=0.3)  # still signed in: the checks pass
    await end()
    assert await live.receive_output(timeout=30) == CLOSED
