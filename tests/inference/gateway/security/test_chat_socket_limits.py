"""The chat websocket is an edge like the API: a message over the size cap is refused unread, and messages
over the per-socket or per-user rate are refused with an error saying when to try again (and that wait is
the truth: the next message after it is taken). No engine: every message here is answered before one would
be asked.

The real ASGI stack (origin check, session cookie, consumer) through channels' communicator, the real
Redis that holds the per-user window; the clock is frozen (time-machine) so the minute is the test's.
"""

from datetime import UTC, datetime

import pytest
import time_machine
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from glmadmin.asgi import application
from tests.support.websocket import ORIGIN

pytestmark = pytest.mark.django_db(transaction=True)
PING = {"type": "ping"}  # an unknown type: answered with an error "unknown_type" when acted on


@pytest.fixture
def limits(settings):
    settings.CHAT_SOCKET_MAX_MESSAGE_CHARS = 10_000
    settings.CHAT_SOCKET_MESSAGES_PER_MINUTE = 3
    settings.CHAT_USER_MESSAGES_PER_MINUTE = 4


@pytest.fixture
def clock():
    start = datetime.now(UTC).replace(microsecond=0)  # whole seconds: the waits computed are whole too
    with time_machine.travel(start, tick=False) as traveller:
        yield traveller


@database_sync_to_async
def cookie_for(django_user_model, username: str) -> tuple[bytes, bytes]:
    user = django_user_model.objects.filter(username=username).first()
    if user is None:
        user = django_user_model.objects.create_user(username, password="pw-socket-12345")
    client = Client()
    client.force_login(user)
    return b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def opened(cookie) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, cookie])
    assert (await ws.connect(timeout=30))[0]
    assert (await ws.receive_json_from(timeout=30))["type"] == "models"
    return ws


async def answered(ws, message: dict) -> dict:
    await ws.send_json_to(message)
    reply = await ws.receive_json_from(timeout=30)
    assert reply["type"] == "error", reply
    return reply


async def test_a_message_over_the_size_cap_is_refused_unread(limits, django_user_model):
    ws = await opened(await cookie_for(django_user_model, "writer"))
    huge = {"type": "send", "model": "any", "messages": [{"role": "user", "content": "x" * 20_000}]}
    reply = await answered(ws, huge)
    assert reply["code"] == "message_too_large"
    assert "at most 10,000" in reply["message"] and "Clear the conversation" in reply["message"]

    # A binary frame (which the JSON consumer would fail on, dropping the socket) is refused the same way.
    await ws.send_to(bytes_data=b"\x00" * 10)
    assert (await ws.receive_json_from(timeout=30))["code"] == "invalid_message"

    # The socket still serves the page.
    assert (await answered(ws, PING))["code"] == "unknown_type"
    await ws.disconnect()


async def test_one_socket_may_send_so_many_messages_a_minute_and_hears_the_true_wait(limits, clock,
                                                                                   django_user_model):
    ws = await opened(await cookie_for(django_user_model, "flooder"))
    for _ in range(3):
        assert (await answered(ws, PING))["code"] == "unknown_type"
    refused = await answered(ws, PING)
    assert refused["code"] == "rate_limited" and refused["retry_after"] == 60
    assert "at most 3 messages a minute on one chat page" in refused["message"]

    clock.shift(59)
    assert (await answered(ws, PING))["retry_after"] == 1  # the refused messages did not count
    clock.shift(1)  # the wait it was told: the first message has left the window
    assert (await answered(ws, PING))["code"] == "unknown_type"
    await ws.disconnect()


async def test_a_user_is_limited_over_all_their_sockets_and_other_users_are_not(limits, clock,
                                                                               django_user_model):
    first = await opened(await cookie_for(django_user_model, "tabby"))
    second = await opened(await cookie_for(django_user_model, "tabby"))  # the same user, another browser
    for _ in range(3):
        assert (await answered(first, PING))["code"] == "unknown_type"
    assert (await answered(second, PING))["code"] == "unknown_type"  # the user's 4th: still within 4
    refused = await answered(second, PING)
    assert refused["code"] == "rate_limited" and refused["retry_after"] == 60
    assert "for one user, over all their chat pages" in refused["message"]

    other = await opened(await cookie_for(django_user_model, "someone-else"))
    assert (await answered(other, PING))["code"] == "unknown_type"

    clock.shift(60)
    assert (await answered(second, PING))["code"] == "unknown_type"
    for ws in (first, second, other):
        await ws.disconnect()
