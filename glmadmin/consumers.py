from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import live
from .lib.websession import SIGNED_OUT, SessionBound
from .lib.wsoutbox import BoundedOutbox


class LiveConsumer(BoundedOutbox, SessionBound, AsyncJsonWebsocketConsumer):
    """Pushes the live state (status bar, alert banners) to every open page.

    Origin is checked by the ASGI stack before this runs; here only signed-in
    users are let in, and only for as long as their session lasts (SessionBound:
    closed on logout, expiry and deactivation), and only while it reads
    (BoundedOutbox: a page that stops reading is dropped). The group is joined before the
    snapshot is read, so a change made in between still arrives afterwards.
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        # A page with cards of its own (the dashboard) asks for them; any other page gets the shared parts.
        page = parse_qs(self.scope.get("query_string", b"").decode()).get("page", [None])[0]
        self.page = page if page in live.pages() else None
        await self.bind_session()
        await self.channel_layer.group_add(live.group(self.page), self.channel_name)
        await self.accept()
        await self.send_json(await database_sync_to_async(live.message)(page=self.page))

    async def disconnect(self, code):
        await self.unbind_session()
        await self.channel_layer.group_discard(live.group(getattr(self, "page", None)), self.channel_name)

    async def receive_json(self, content, **kwargs):
        pass  # the protocol is server to browser only

    async def dispatch(self, message):
        # A push is only passed on, with no query: channels' own dispatch would first hop to its one database
        # thread to close stale connections, for every open page in turn, and with 1,000 pages open that thread
        # was the queue each push waited in (most of the fan-out's 1-1.6 s; docs/benchmarks.md).
        if message["type"] == "live.state":
            await self.live_state(message)
            return
        await super().dispatch(message)

    async def live_state(self, event):
        await self.send(text_data=event["text"])
