"""A page that stops reading its websocket is dropped, not buffered for: messages for it do not pile up
in the web process (real uvicorn, the real Redis channel layer, a client that stops reading).

The client's receive buffer is small and its library stops reading from the network while one frame
waits unread, so the server's sends block as a stalled browser's would.
"""

import asyncio
import os
import socket
import time

import pytest
from channels.layers import get_channel_layer
from websockets.asyncio.client import connect

from glmadmin import live
from glmadmin.lib import redis as rd
from glmadmin.lib.wsoutbox import BoundedOutbox
from tests.support.websocket import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE = 20_000  # bytes of each pushed state; random, so compression cannot shrink them
# About twice what the socket's buffers and the outbox hold together, and few enough megabytes (6) that
# Redis does not cut off the server's subscription (its pubsub output limit) instead.
PUSHED = 300


def subscribers(group: str) -> int:
    """Web processes listening to group (the pubsub channel layer subscribes a process per group)."""
    channel = get_channel_layer()._get_group_channel_name(group)
    return dict(rd.client().pubsub_numsub(channel)).get(channel, 0)


async def test_a_page_that_stops_reading_is_dropped(server, django_user_model):
    assert BoundedOutbox.outbox_size * MESSAGE < PUSHED * MESSAGE / 2
    cookie = (await session_cookie(django_user_model))[1].decode()
    host, port = server.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with connect(f"ws://{host}:{port}/ws/live/", sock=sock, origin=f"http://{host}", compression=None,
                       additional_headers={"Cookie": cookie}, max_queue=1, max_size=None, close_timeout=0.5):
        # The snapshot waits unread in the client's queue; from here on the page reads nothing.
        assert subscribers(live.GROUP) == 1
        text = os.urandom(MESSAGE // 2).hex()
        for _ in range(PUSHED):
            await get_channel_layer().group_send(live.GROUP, {"type": "live.state", "text": text})
        # Dropped: the consumer left its groups (its process unsubscribed) instead of queueing the rest.
        deadline = time.monotonic() + 30
        while subscribers(live.GROUP) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the pace of polling Redis for the server's state: no event to wait on
        assert subscribers(live.GROUP) == 0

