"""A bounded outgoing queue per websocket: a client that stops reading is dropped, not buffered for.

Channels hands a consumer its messages one at a time, and a send to a client that no longer reads
blocks once the socket's buffers are full; meanwhile every message for that consumer (each a full
live state, or a chat answer's tokens) waits in the channel layer's queue in the web process, without
bound. With BoundedOutbox a consumer's sends go into a queue of `outbox_size` messages that one writer
task drains to the client; a send that finds the queue full drops the client: the consumer then sees a
disconnect (its usual clean-up runs: groups left, answers stopped) and nothing more is queued for it.
"""

import asyncio
import logging

SLOW_READER = 4408  # the code the consumer's disconnect() is given
log = logging.getLogger(__name__)


class BoundedOutbox:
    """A mixin for channels' async websocket consumers (first in the bases, so that it wraps them)."""

    outbox_size = 64

    async def __call__(self, scope, receive, send):
        outbox: asyncio.Queue = asyncio.Queue(self.outbox_size)
        dropped = asyncio.Event()

        async def enqueue(message):
            if dropped.is_set():
                return  # nobody reads any more: nothing is kept for them
            try:
                outbox.put_nowait(message)
            except asyncio.QueueFull:
                log.info("websocket %s dropped: its client stopped reading", scope.get("path"))
                dropped.set()

        async def receive_or_drop():
            """The client's next message, or a disconnect once the client is dropped."""
            if dropped.is_set():
                return {"type": "websocket.disconnect", "code": SLOW_READER}
            message, drop = asyncio.ensure_future(receive()), asyncio.ensure_future(dropped.wait())
            try:
                await asyncio.wait([message, drop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                drop.cancel()
                arrived = message.done()
                if not arrived:
                    message.cancel()  # a wait on the server's queue: cancelling it loses no message
            return message.result() if arrived else {"type": "websocket.disconnect", "code": SLOW_READER}

        writer = asyncio.create_task(_write(outbox, send, dropped))
        try:
            await super().__call__(scope, receive_or_drop, enqueue)
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)


async def _write(outbox: asyncio.Queue, send, dropped: asyncio.Event) -> None:
    try:
        while True:
            await send(await outbox.get())
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the connection broke: the client is gone, drop it as a slow one
        log.info("websocket send failed; dropping the client", exc_info=True)
        dropped.set()
