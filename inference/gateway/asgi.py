"""The ASGI application that serves /v1/* (mounted ahead of Django in glmadmin/asgi.py).

Raw ASGI on purpose: no middleware, sessions or templates between an engine's
token and the client. Django's ORM is never called per request (keys, routes and
the admission flag are read from Redis).
"""

import asyncio
import json
import logging
import time

from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import guards, keys, relay, routing, stats
from .errors import GatewayError, bad_request

log = logging.getLogger(__name__)

JSON = (b"content-type", b"application/json")
COMPLETIONS = {"/v1/chat/completions": "chat/completions", "/v1/completions": "completions"}
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    started = False

    async def tracked(message):
        nonlocal started
        started = True  # the first message sent is the response's start
        await send(message)

    try:
        await _serve(scope, receive, tracked)
    except Exception as exc:  # noqa: BLE001 - the client gets an OpenAI-shaped error, the log the traceback
        log.exception("gateway: %s %s failed", scope["method"], scope["path"])
        if not started:
            await _error(send, _internal(exc))


def _internal(exc: Exception) -> GatewayError:
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return GatewayError(503, "The gateway cannot reach its state store (Redis) right now. Try again shortly.",
                            type="server_error", code="service_unavailable",
                            retry_after=settings.GATEWAY_LOADING_RETRY_AFTER)
    return GatewayError(500, "The gateway failed while handling this request (an internal error; it is logged "
                             "on the server). Try again; if it persists, tell the administrator.",
                        type="server_error", code="internal_error")


async def _serve(scope, receive, send):
    path, method = scope["path"], scope["method"]
    if path in COMPLETIONS:
        allowed = "POST"
    elif path == "/v1/models":
        allowed = "GET"
    else:
        return await _error(send, GatewayError(404, f"Unknown path {path}: this gateway serves /v1/chat/completions, "
                                                    "/v1/completions and /v1/models.", code="not_found"))
    if method != allowed:
        return await _error(send, GatewayError(405, f"Use {allowed} for {path}, not {method}.",
                                               code="method_not_allowed"))
    caller = presented = None
    try:
        if path == "/v1/models":
            caller = await keys.caller_for(_presented(scope).plain)
            if caller is None:
                raise keys.invalid_key()
            return await _models(send)
        presented = _presented(scope)  # checked by the admit-and-route script, with the body's model
        raw = await _read(scope, receive)
        body = guards.parsed(raw)
    except GatewayError as exc:
        if presented is not None:  # a body refused: an unknown key hears only that it is unknown
            caller = await keys.caller_for(presented.plain)
            exc = exc if caller is not None else keys.invalid_key()
        await stats.record(stats.Outcome(caller.stats_label if caller else "anonymous", "-", "-", exc.status))
        return await _error(send, exc)
    await _answer(presented, COMPLETIONS[path], body, raw, receive, send)


async def _answer(presented: keys.Presented, endpoint: str, body, raw: bytes, receive, send):
    """Open the engine's answer and pass it through. The client's disconnect is watched from here on:
    uvicorn does not cancel an app whose client left, so the watcher cancels this task, whether it is
    waiting for admission, for an engine, or relaying (the engine's request is aborted, the slots freed)."""
    task, gone = asyncio.current_task(), False

    def on_message(message):
        nonlocal gone
        if not message.cancelled() and message.exception() is None:
            gone = True  # the body was read: the next message is the disconnect, whenever it comes
            task.cancel()

    watch = asyncio.ensure_future(receive())
    watch.add_done_callback(on_message)
    upstream = None
    try:
        try:
            upstream = await relay.open_stream(presented, endpoint, body, raw)
        except GatewayError as exc:
            return await _error(send, exc)
        headers = [(b"content-type", upstream.content_type.encode("latin-1"))]
        if upstream.streaming:
            headers += STREAM_HEADERS
        await send({"type": "http.response.start", "status": upstream.status_code, "headers": headers})
        async for chunk in upstream.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await upstream.aclose()  # counted before the client sees the end: an answer seen whole is counted
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()  # the client left: nothing to answer, nobody to tell
    finally:
        watch.remove_done_callback(on_message)
        if not watch.done():
            watch.cancel()
        if upstream is not None:
            await upstream.aclose()


def _presented(scope) -> keys.Presented:
    header = _header(scope, b"authorization")
    if not header:
        raise keys.missing_key()
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain.strip():
        raise keys.invalid_key()
    return keys.Presented(plain.strip())


def _header(scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


async def _read(scope, receive) -> bytes:
    limit = settings.GATEWAY_MAX_BODY_BYTES
    too_large = bad_request("request_too_large", f"The request body is larger than the {limit} bytes allowed.")
    length = _header(scope, b"content-length")
    if length.isdigit() and int(length) > limit:
        raise too_large
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise bad_request("invalid_json", "The client went away before the request body was complete.")
        part = message.get("body", b"")
        parts.append(part)
        size += len(part)
        more = message.get("more_body", False)
        if size > limit:
            raise too_large
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _models(send):
    created = int(time.time())
    data = [{"id": name, "object": "model", "created": created, "owned_by": "glmadmin"}
            for name in await routing.ready_models()]
    await _json(send, 200, {"object": "list", "data": data})


async def _error(send, exc: GatewayError):
    await send({"type": "http.response.start", "status": exc.status, "headers": exc.headers()})
    await send({"type": "http.response.body", "body": exc.encoded()})


async def _json(send, status: int, payload: dict):
    await send({"type": "http.response.start", "status": status, "headers": [JSON]})
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
