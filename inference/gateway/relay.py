"""The admission path and the upstream request: what the HTTP API and the chat page both call.

open_stream() validates, admits, routes and connects; the Relay it returns passes
the engine's bytes through unchanged and, when closed, releases what the request
held (the caller's concurrency slot, the engine's in-flight count) and counts it.
"""

import asyncio
import collections
import json
import logging
import time
import uuid

from django.conf import settings

from . import admit_and_route, guards, keys, leases, limits, media, redis_state, routing, stats, upstream
from .errors import GatewayError

log = logging.getLogger(__name__)

KEEP_BODY = 256 * 1024  # of a non-streamed answer, to read its usage when it is done
KEEP_CHUNKS = 16  # of a stream's last chunks: the usage event, if asked for, is among the last events
_ABSENT = object()


async def open_stream(who: "keys.Caller | keys.Presented", endpoint: str, body: dict,
                      raw: bytes | None = None) -> "Relay":
    """who: the chat page's user (a Caller) or the API key a client presented; endpoint: "chat/completions"
    or "completions"; body: the client's parsed JSON object (raw: its bytes, sent on as they are when
    nothing needs to change). Runs the whole admission path in order — validate body (guards; media parts
    against the model's engines: media.py), key,
    red-alert pause, caller limits, route (one Redis round trip), connect (the same engine once more
    on a stale kept connection, then one other engine, before the first byte) — and raises
    GatewayError on any refusal. The HTTP API and the chat consumer both call this. Cancelling it
    (the client went away) releases what the request held and aborts the engine's request."""
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    try:
        if endpoint not in guards.ENDPOINTS:
            raise GatewayError(404, f"Unknown endpoint '{endpoint}'.", code="not_found")
        payload, parts = guards.checked(endpoint, body)
        if parts:  # judged against the model's engines before anything is admitted (text requests never are)
            await media.check(payload["model"], parts)
    except GatewayError as exc:
        caller = await keys.caller_for(who.plain) if isinstance(who, keys.Presented) else who
        error = exc if caller is not None else keys.invalid_key()  # an unknown key hears only that
        await stats.record(stats.Outcome(caller.stats_label if caller else "anonymous", "-", "-", error.status,
                                         duration_s=time.perf_counter() - started))
        raise error from None
    model = payload["model"]
    busy = admit_and_route.slot_keys(who)[1]
    leases.hold(request_id, busy)
    try:
        admitted = await _admitted(who, request_id, model)
    except BaseException:
        leases.drop(request_id)
        raise
    leases.add(request_id, redis_state.inflight_key(admitted.engine))
    try:
        return await _connect(admitted, endpoint, model, _encoded(body, payload, raw), request_id, started,
                              payload.get("stream") is True)
    except BaseException as exc:
        leases.drop(request_id)
        pipe = redis_state.client().pipeline(transaction=False)
        limits.release(pipe, admitted.caller, request_id)
        if isinstance(exc, GatewayError):
            stats.add(pipe, stats.Outcome(admitted.caller.stats_label, model, "-", exc.status,
                                          duration_s=time.perf_counter() - started))
        elif isinstance(exc, asyncio.CancelledError):  # the client went away before the first byte
            stats.add(pipe, stats.Outcome(admitted.caller.stats_label, model, admitted.engine, 499,
                                          duration_s=time.perf_counter() - started))
        await pipe.execute()
        raise


async def _admitted(who, request_id: str, model: str) -> admit_and_route.Admitted:
    """admit_and_route.enter(), with refusals counted; a cancellation while the script runs releases
    whatever it may have taken (a race lost here costs at most one lease: the request is no longer renewed)."""
    try:
        return await admit_and_route.enter(who, request_id, model, time.time())
    except admit_and_route.Refused as refused:
        label = refused.caller.stats_label if refused.caller else "anonymous"
        await stats.record(stats.Outcome(label, model if refused.known else "-", "-", refused.error.status))
        raise refused.error from None
    except asyncio.CancelledError:
        await admit_and_route.release_anywhere(who, request_id)
        raise


def _encoded(body: dict, payload: dict, raw: bytes | None) -> bytes:
    """The bytes to send upstream: the client's own when the guards changed nothing; with only fields
    added (the max_tokens cap), those spliced in at the start of the object; else serialised anew."""
    if raw is not None and json.detect_encoding(raw) == "utf-8":
        if payload is body:
            return raw
        added = {name: value for name, value in payload.items() if name not in body}
        if added and all(payload.get(name, _ABSENT) is value for name, value in body.items()):
            start = raw.index(b"{") + 1
            return raw[:start] + json.dumps(added)[1:-1].encode() + b"," + raw[start:]
    return json.dumps(payload).encode()


async def _connect(admitted: admit_and_route.Admitted, endpoint: str, model: str, content: bytes, request_id: str,
                   started: float, streaming: bool) -> "Relay":
    caller, engine, url = admitted.caller, admitted.engine, admitted.url
    pool = upstream.pool(settings.GATEWAY_CONNECT_TIMEOUT, settings.GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT,
                         settings.GATEWAY_UPSTREAM_IDLE_TIMEOUT)
    path, failed = f"/v1/{endpoint}", ""
    while True:
        response = None
        try:
            response = await pool.post(url, path, content)
            body = response.body()
            # The first byte is read here, so a failure before it can still go to another engine.
            first = await anext(body, b"")
            return Relay(caller, engine, model, response, body, first, request_id, started, streaming)
        except upstream.UpstreamError as exc:
            if response is not None:
                await response.aclose()
            await redis_state.client().zrem(redis_state.inflight_key(engine), request_id)
            if exc.timeout:  # the engine has the request and may be queueing it: another wait elsewhere is no help
                log.warning("gateway: engine %s did not answer request %s in time (%s)", engine, request_id, exc)
                raise GatewayError(504, f"The engine serving model '{model}' did not start its answer within "
                                        f"{settings.GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT} s. Try again later, or "
                                        "ask for fewer tokens.", type="server_error", code="upstream_timeout",
                                   retry_after=settings.GATEWAY_LOADING_RETRY_AFTER) from exc
            log.warning("gateway: engine %s failed before the first byte (%s)%s", engine, exc,
                        "" if failed else "; retrying on another engine")
            if failed:
                raise _unavailable(model, exc) from exc
            failed = engine
            try:
                engine, url = await routing.pick(model, request_id, time.time(), exclude=failed)
            except GatewayError:
                if not exc.malformed:
                    raise
                raise _unavailable(model, exc) from exc
            leases.add(request_id, redis_state.inflight_key(engine))
        except BaseException:
            if response is not None:
                await response.aclose()  # unread: the connection is closed, and the engine aborts
            await redis_state.client().zrem(redis_state.inflight_key(engine), request_id)
            raise


def _unavailable(model: str, exc: upstream.UpstreamError) -> GatewayError:
    if exc.malformed:
        return GatewayError(502, f"The engine serving model '{model}' sent an answer that is not valid HTTP "
                                 "(logged on the server). Try again shortly; if it persists, tell the administrator.",
                            type="server_error", code="upstream_malformed",
                            retry_after=settings.GATEWAY_LOADING_RETRY_AFTER)
    return GatewayError(502, f"The engines serving model '{model}' could not be reached. Try again shortly.",
                        type="server_error", code="upstream_unavailable",
                        retry_after=settings.GATEWAY_LOADING_RETRY_AFTER)


class Relay:
    """An engine's answer in progress. Close it (aclose) in a finally: that aborts what is still
    running upstream and releases the request's slots."""

    def __init__(self, caller: keys.Caller, engine_name: str, model: str, response: upstream.Response, body,
                 first: bytes, request_id: str, started: float, streaming: bool):
        self.caller, self.engine_name, self.model = caller, engine_name, model
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "application/json")
        self.streaming = streaming
        # Events, not just bytes: a stream is passed on in whole events (see chunks()).
        self._sse = streaming and self.content_type.startswith("text/event-stream")
        self.request_id = request_id
        self._response, self._body, self._first = response, body, first
        self._started = started
        self.first_byte_s = time.perf_counter() - started
        self._kept = []  # a non-streamed answer's chunks (up to KEEP_BODY bytes)
        self._kept_bytes = 0
        self._tail = collections.deque(maxlen=KEEP_CHUNKS)  # a stream's last chunks
        self._events = 0
        self._held = b""  # the start of an event whose end has not arrived yet
        self._finished = False  # the engine's answer ended normally
        self._cut = False  # the connection to the engine broke mid-answer
        self._closed = False

    async def chunks(self):
        """The engine's bytes, exactly as sent, what one read brought in one part. A stream goes out in whole
        events: the start of an event whose end has not arrived waits for it (an SSE client cannot use it
        before, so no one waits longer), and an event cut off by a broken engine is never sent. If the engine
        breaks off mid-stream, one SSE error event follows, so a client sees an error instead of waiting
        forever or reading half an event; a non-streamed answer cut off raises UpstreamError instead (its
        client's connection is broken off: a 200 must not end as if its body were whole)."""
        try:
            if data := self._passed(self._first):
                yield data
            async for chunk in self._body:
                if data := self._passed(chunk):
                    yield data
        except upstream.UpstreamError as exc:
            if self._sse and self._answered():
                # The client has the whole answer: nothing to tell it. The connection is not reused.
                log.warning("gateway: engine %s misbehaved after answering request %s: %s", self.engine_name,
                            self.request_id, exc)
                self._finished = True
                return
            self._cut = True
            log.warning("gateway: engine %s broke off request %s: %s", self.engine_name, self.request_id, exc)
            if not self._sse:
                raise
            yield b"data: " + _broken_off(exc).encoded() + b"\n\n"
            return
        if self._held:  # a stream that ended without the blank line after its last event: passed on as it is
            held, self._held = self._held, b""
            self._seen(held)
            yield held
        self._finished = True

    def _passed(self, chunk: bytes) -> bytes:
        """What of chunk goes to the client now (counted as seen)."""
        if self._sse and (self._held or not chunk.endswith(b"\n\n")):
            chunk, self._held = _whole_events(self._held + chunk)
        if chunk:
            self._seen(chunk)
        return chunk

    def _answered(self) -> bool:
        """The stream's last event passed on is [DONE]: the client has the whole answer."""
        return b"".join(self._tail).rstrip().endswith(b"data: [DONE]")

    def _seen(self, chunk: bytes) -> None:
        if self.streaming:
            self._events += chunk.count(b"\n\n")
            self._tail.append(chunk)
        elif self._kept_bytes < KEEP_BODY:
            self._kept.append(chunk)
            self._kept_bytes += len(chunk)

    async def aclose(self) -> None:
        """Abort upstream if still open, release the caller's concurrency slot and the engine's
        in-flight count, count the request; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._response.aclose()  # unread: the connection is closed, and vLLM aborts the request
        finally:
            leases.drop(self.request_id)
            # Shielded: a client that hangs up right after its last event (many stop reading at [DONE])
            # cancels this task mid-release; the slots must still be given back, not left to the lease.
            held = [limits.busy_key(self.caller), redis_state.inflight_key(self.engine_name)]
            await asyncio.shield(stats.finish(self._outcome(), self.request_id, held,
                                              limits.usage_keys(self.caller)))

    def _outcome(self) -> stats.Outcome:
        if self._cut:
            status = 502
        elif not self._finished and not (self._sse and self._answered()):
            # (A client that read up to [DONE] and left, as the chat page does, had the whole answer.)
            status = 499  # the client went away first (nginx's code for it)
        else:
            status = self.status_code
        prompt, completion = self._usage()
        return stats.Outcome(self.caller.stats_label, self.model, self.engine_name, status,
                             first_byte_s=self.first_byte_s, duration_s=time.perf_counter() - self._started,
                             prompt_tokens=prompt, completion_tokens=completion)

    def _usage(self) -> tuple[int, int]:
        """(prompt, completion) tokens: from the answer's usage where it has one; for a stream without
        it, completion tokens estimated as one per event (vLLM sends one token per chunk)."""
        if self.status_code >= 400:
            return 0, 0
        usage = None
        try:
            if not self.streaming:
                usage = json.loads(b"".join(self._kept)).get("usage")
            else:
                for event in reversed(b"".join(self._tail).split(b"\n\n")):
                    if event.startswith(b"data: {") and b'"usage"' in event:
                        usage = json.loads(event[6:]).get("usage")
                        if usage:
                            break
        except (ValueError, AttributeError):
            usage = None
        if isinstance(usage, dict):
            return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        return 0, max(0, self._events - 1) if self.streaming else 0


def _whole_events(data: bytes) -> tuple[bytes, bytes]:
    """(the whole SSE events at the start of data, the start of an event after them). An event ends with a
    blank line: LF LF as vLLM writes it, or with CRLF or CR line ends."""
    end = 0
    for blank in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = data.rfind(blank)
        if at >= 0:
            end = max(end, at + len(blank))
    return data[:end], data[end:]


def _broken_off(exc: upstream.UpstreamError) -> GatewayError:
    """The mid-stream error event's content: what happened, in OpenAI's error shape."""
    if exc.timeout:
        return GatewayError(504, f"The engine sent nothing for {settings.GATEWAY_UPSTREAM_IDLE_TIMEOUT} s and the "
                                 "answer was cut off. Try again.", type="server_error", code="upstream_timeout")
    if exc.malformed:
        return GatewayError(502, "The engine's answer broke its HTTP framing and was cut off (logged on the "
                                 "server). Try again.", type="server_error", code="upstream_malformed")
    return GatewayError(502, "The engine stopped answering mid-stream.", type="server_error",
                        code="upstream_unavailable")
