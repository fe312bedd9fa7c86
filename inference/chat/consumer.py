"""The chat page's websocket: one streamed answer at a time, through the gateway's own admission path.

Browser to server: {"type": "send", "model", "messages", "max_tokens"?, "temperature"?} and {"type": "stop"}.
Server to browser: {"type": "models", "states"}, {"type": "trimmed", "dropped", "message"},
{"type": "token", "text"}, {"type": "done", "finish_reason", "usage"}, {"type": "error", "code", "message"}.
A token message carries every delta that arrived since the last one (at most 40 messages a second).

Each answer runs in its own task so that "stop" (and engine state changes) are handled while tokens
stream; stop and disconnect abort the upstream request, which frees the engine's slot at once.
The socket closes with 4401 when its session ends (logout, expiry, deactivation, a new password).
A message over the size cap, or over the per-socket or per-user rate, is answered with an error
({"type": "error", "code": "message_too_large" or "rate_limited", "retry_after"}) and not acted on
(socket_limits.py).
"""

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from glmadmin.lib.websession import SIGNED_OUT, SessionBound
from glmadmin.lib.wsoutbox import BoundedOutbox
from inference.gateway import routing
from inference.gateway.errors import GatewayError
from inference.gateway.keys import Caller
from inference.gateway.relay import open_stream

from . import conversation, socket_limits, stream
from .stream import AnswerError

log = logging.getLogger(__name__)


class ChatConsumer(BoundedOutbox, SessionBound, AsyncJsonWebsocketConsumer):
    """Open for as long as the session it was opened in (SessionBound: closed on logout, expiry and
    deactivation), and the session is checked again before each message is acted on. A page that stops
    reading is dropped (BoundedOutbox), which stops its answer."""

    async def connect(self):
        # The origin was checked by the ASGI stack (AllowedHostsOriginValidator) before this runs.
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=SIGNED_OUT)
            return
        self.answer: asyncio.Task | None = None
        self.closed = False
        self.states = None
        self.window = socket_limits.SocketWindow()
        await self.bind_session()
        # Told (with the new states) when a model's state changes: the model indicator follows it.
        await self.channel_layer.group_add(routing.GROUP, self.channel_name)
        await self.accept()
        await self.send_models()

    async def disconnect(self, code):
        if not hasattr(self, "answer"):
            return  # refused in connect
        self.closed = True
        await self.stop_answer()  # aborts the upstream request: the engine stops generating for nobody
        await self.unbind_session()
        await self.channel_layer.group_discard(routing.GROUP, self.channel_name)

    async def end_session(self):
        self.closed = True  # nothing more goes to the page
        await self.stop_answer()  # the engine stops generating for someone signed out
        await super().end_session()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        # Size and rate first: a refused message is neither parsed nor checked against the session store.
        try:
            await socket_limits.check(self.window, self.user.pk, text_data)
        except socket_limits.Refused as refused:
            await self.send_error(refused.code, refused.message, retry_after=refused.retry_after)
            return
        await super().receive(text_data=text_data, bytes_data=bytes_data, **kwargs)

    async def receive_json(self, content, **kwargs):
        if not await self.session_valid():  # signed out, expired or deactivated since the last message
            await self.end_session()
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {"send": self.on_send, "stop": self.on_stop}.get(kind)
        if handler is None:
            await self.send_error("unknown_type", f"Unknown message type {kind!r}: expected send or stop.")
            return
        await handler(content)

    async def decode_json(self, text_data):
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None  # answered as an unknown type rather than closing the socket

    # --- browser messages ------------------------------------------------------
    async def on_send(self, content):
        if self.answer is not None and not self.answer.done():
            await self.send_error("busy", "An answer is still streaming: stop it or wait for it to finish.")
            return
        try:
            body, dropped = self.request_body(content)
        except conversation.ConversationError as exc:
            message = str(exc)
            await self.send_error("invalid_request", message[:1].upper() + message[1:])
            return
        if dropped:
            await self.send_json({"type": "trimmed", "dropped": dropped, "message": (
                f"The {dropped} oldest message{'s' if dropped > 1 else ''} of this conversation "
                f"{'were' if dropped > 1 else 'was'} not sent: the model reads at most "
                f"{settings.CHAT_HISTORY_MAX_CHARS:,} characters of it.")})
        self.answer = asyncio.create_task(self.stream_answer(body))

    async def on_stop(self, content):
        await self.stop_answer()

    # --- the answer ------------------------------------------------------------
    def request_body(self, content) -> tuple[dict, int]:
        model = content.get("model")
        if not isinstance(model, str) or not model:
            raise conversation.ConversationError("choose a model.")
        turns = conversation.fitted(conversation.checked(content.get("messages")), settings.CHAT_HISTORY_MAX_CHARS)
        body = {"model": model, "messages": turns.messages, "stream": True,
                "stream_options": {"include_usage": True},
                "max_tokens": bounded(content.get("max_tokens"), 1, settings.CHAT_MAX_TOKENS, "max_tokens",
                                      integer=True, default=settings.CHAT_MAX_TOKENS)}
        temperature = content.get("temperature")
        if temperature is not None:
            body["temperature"] = bounded(temperature, 0, 2, "temperature")
        return body, turns.dropped

    async def stream_answer(self, body: dict):
        try:
            finish_reason, usage = await self.relay(body)
        except asyncio.CancelledError:
            if self.closed:
                return  # the page is gone: nobody to tell
            finish_reason, usage = "stopped", None  # the user pressed Stop
        except GatewayError as exc:
            await self.send_error(exc.code or exc.type, exc.message, retry_after=exc.retry_after)
            return
        except AnswerError as exc:
            await self.send_error(*exc.args)
            return
        except Exception:  # a broken stream must still end the answer on the page
            log.exception("chat answer for %s failed", self.user.get_username())
            await self.send_error("stream_failed", "The answer stream broke off. Try again.")
            return
        await self.send_json({"type": "done", "finish_reason": finish_reason, "usage": usage})

    async def relay(self, body: dict) -> tuple[str | None, dict | None]:
        """The engine's answer to the page as it arrives (paced: stream.py); (finish_reason, usage) at the end."""
        upstream = await open_stream(Caller("user", self.user.pk, self.user.get_username()),
                                     "chat/completions", body)
        try:
            if upstream.status_code != 200:
                raise AnswerError(*await upstream_refusal(upstream))
            return await stream.relay(upstream, lambda text: self.send_json({"type": "token", "text": text}))
        finally:
            # Shielded: a second cancel (the socket closing) must not skip freeing the engine's slot.
            await asyncio.shield(upstream.aclose())

    async def stop_answer(self):
        task, self.answer = self.answer, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- model states ----------------------------------------------------------
    async def routes_changed(self, event):
        await self.send_models(event["states"])  # the states of the table just written: no query per page

    async def send_models(self, states: dict | None = None):
        if states is None:
            states = await database_sync_to_async(routing.model_states)()
        if states != self.states:
            self.states = states
            await self.send_json({"type": "models", "states": states})

    async def send_error(self, code: str, message: str, retry_after: int | None = None):
        await self.send_json({"type": "error", "code": code, "message": message, "retry_after": retry_after})


def bounded(value, low, high, name: str, *, integer: bool = False, default=None):
    """value if it is a number from low to high (JSON's true/false are not numbers), else default if unset."""
    if value is None and default is not None:
        return default
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise conversation.ConversationError(f"{name} must be {kind} from {low} to {high}.")
    return value


async def upstream_refusal(upstream) -> tuple[str, str]:
    """The engine's own error answer (not SSE) as (code, message)."""
    raw = b"".join([chunk async for chunk in upstream.chunks()])
    try:
        error = json.loads(raw)
        error = error.get("error", error)
        message = error.get("message") or raw.decode(errors="replace")
    except (ValueError, AttributeError):
        message = raw.decode(errors="replace")[:300]
    return "upstream_error", f"The engine refused the request (HTTP {upstream.status_code}): {message}"
