"""A request-body size limit in front of an ASGI app, enforced before the app reads a byte.

Django's ASGI handler reads a whole request body into a temporary file (on disk past 2.5 MB) before
any middleware, CSRF check or login requirement runs: without this, one anonymous POST of 2 GiB
fills the temp directory, on the very disk glmadmin watches (its red alert would pause inference).
A declared Content-Length over the cap is answered 413 without reading the body; a streamed body is
cut off, and answered 413, as soon as it passes the cap.
"""

import json

TOO_LARGE = 413
DISCONNECT = {"type": "http.disconnect"}


class BodyLimit:
    """app behind a cap on request bodies: `default` bytes, or `caps[path]` for the paths listed there."""

    def __init__(self, app, default: int, caps: dict[str, int] | None = None):
        self.app, self.default, self.caps = app, default, dict(caps or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.caps.get(scope["path"], self.default)
        declared = _declared_length(scope)
        if declared is not None and declared > cap:
            return await _refuse(send, cap)
        received, over, started = 0, False, False

        async def limited_receive():
            nonlocal received, over
            if over:
                return DISCONNECT
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # The chunk past the cap is never handed on; to the app the client has gone away
                    # (Django stops reading and answers nothing), and the 413 is sent from here.
                    over = True
                    return DISCONNECT
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, tracked_send)
        if over and not started:
            await _refuse(send, cap)


def _declared_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _refuse(send, cap: int) -> None:
    body = json.dumps({"error": f"The request body is larger than the {cap:,} bytes allowed here."}).encode()
    # connection: close: the rest of the body is never read, so the connection cannot carry another request.
    await send({"type": "http.response.start", "status": TOO_LARGE, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
