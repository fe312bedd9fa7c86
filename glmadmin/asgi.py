import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glmadmin.settings")
# Django must be set up before anything imports models (the consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import reverse  # noqa: E402

from glmadmin.lib.bodylimit import BodyLimit  # noqa: E402
from glmadmin.routing import websocket_urlpatterns as live_websockets  # noqa: E402
from inference.chat.views import MULTIPART_ROOM  # noqa: E402
from inference.gateway.asgi import application as gateway_app  # noqa: E402
from inference.routing import websocket_urlpatterns as inference_websockets  # noqa: E402
from monitoring.deadman import Ticker  # noqa: E402

# Django spools a body to disk before any view or login check: capped here, uploads by their own cap.
limited_django_app = BodyLimit(django_asgi_app, settings.WEB_MAX_BODY_BYTES,
                               {reverse("chat-upload"): settings.CHAT_UPLOAD_MAX_BYTES + MULTIPART_ROOM})


async def http(scope, receive, send):
    # The OpenAI API is served by its own lean ASGI app: no sessions, templates or
    # middleware on the path of every streamed token (it caps its own bodies, in memory).
    if scope["path"].startswith("/v1/"):
        return await gateway_app(scope, receive, send)
    return await limited_django_app(scope, receive, send)


async def lifespan(scope, receive, send):
    # Every web process watches the disk checks' heartbeat (the dead man's switch): it raises "monitoring
    # stalled" itself, since the worker or beat that would raise anything may be what stopped.
    ticker = Ticker()
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            ticker.start()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await asyncio.to_thread(ticker.stop)  # a tick that is sending finishes first (bounded wait)
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": http,
        "lifespan": lifespan,
        # Origin first (a foreign page cannot ride the session cookie), then the session user.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(live_websockets + inference_websockets))
        ),
    }
)
