"""A small HTTP/1.1 client for the engines: POST a JSON body, read the answer as it comes.

Why not httpx: per request and per chunk it costs several times what the gateway
itself does (its pure-Python h11 parser sees every SSE event). Here the answer is
parsed by httptools (llhttp, the parser of Node.js and of uvicorn, which serves
the gateway itself): status line, headers, content-length or chunked framing. It
refuses what a hand-written reader let through (chunk sizes such as "0x5", "+5",
"5_0" or past 64 bits, duplicate or conflicting content-length, bare LF line
ends) and the answer fails with UpstreamError(malformed=True).

A connection is reused only after an answer that ended exactly where its framing
said: bytes beyond it, or any byte arriving while it waits in the pool, close
it (they could be taken for the next request's answer). So does any error.

Connections are kept per engine address for KEEPALIVE seconds, less than vLLM's
uvicorn keeps an idle connection (5 s), so a kept connection is rarely dead. One
that is (closed by the engine as it was being reused) fails with
UpstreamError(stale=True) before any byte of an answer: safe to send again.

Timeouts (Pool.first_byte_timeout, Pool.idle_timeout): an answer's first byte of
body may take long (queueing, prefill, and a non-streamed answer sends nothing
until it is whole); after it, a silence between reads is bounded separately.
A timer set when the request is sent and again at the body's first byte, moved on only when it
fires: a read costs a clock reading.
"""

import asyncio
import time
import weakref
from urllib.parse import urlsplit

import httptools

KEEPALIVE = 4.0  # seconds an idle connection is kept: below vLLM's (uvicorn's) 5 s
MAX_IDLE = 256  # idle connections kept per engine
MAX_HEAD = 64 * 1024  # bytes of status line and headers
HIGH_WATER = 256 * 1024  # body bytes arrived and not yet taken: above this, reading pauses (a slow client)
# At most this much in one part (unless one chunk is larger): a part is one write to the client. As much as the
# hand-written reader read at once (64 KiB: fewer parts cost the gateway fewer sends), less the client's framing
# (a write larger than the client's reads, 64 KiB for httpx, would reach it cut mid-event).
MAX_PART = 64 * 1024 - 256
FIRST_BYTE_TIMEOUT = 600.0  # defaults; the gateway passes its settings
IDLE_TIMEOUT = 120.0


class UpstreamError(Exception):
    """The engine could not be reached, broke off, or answered what is not HTTP/1.1. connect: no connection
    was made; stale: a kept connection turned out closed before any byte of the answer (the request can be
    sent again); timeout: the engine sent nothing for too long; malformed: the answer's framing is broken."""

    def __init__(self, message: str, *, connect: bool = False, stale: bool = False, timeout: bool = False,
                 malformed: bool = False):
        super().__init__(message)
        self.connect, self.stale, self.timeout, self.malformed = connect, stale, timeout, malformed


class _Connection(asyncio.Protocol):
    """One TCP connection to an engine. Bytes go to the Response being read; none is expected otherwise."""

    __slots__ = ("transport", "response", "idle_since", "open")

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None  # the answer being read; None while the connection waits
        self.idle_since = 0.0
        self.open = True  # False once closed by either side: never reused

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes):
        if self.response is None:
            self.close()  # bytes no request asked for: whatever they are, this connection is out of step
        else:
            self.response._received(data)

    def eof_received(self):
        return False  # the engine closed its side: close ours

    def connection_lost(self, exc):
        self.open = False
        if self.response is not None:
            self.response._lost()

    def usable(self, now: float) -> bool:
        return self.open and now - self.idle_since < KEEPALIVE and not self.transport.is_closing()

    def close(self) -> None:
        self.open = False
        self.transport.abort()  # at once: a request still running upstream sees its client gone


class Pool:
    """Kept connections of one event loop, per (host, port)."""

    def __init__(self, connect_timeout: float, first_byte_timeout: float = FIRST_BYTE_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT):
        self.connect_timeout = connect_timeout
        self.first_byte_timeout, self.idle_timeout = first_byte_timeout, idle_timeout
        self.idle: dict[tuple[str, int], list[_Connection]] = {}
        self.resent = 0  # requests sent again after a stale kept connection

    async def post(self, base_url: str, path: str, body: bytes) -> "Response":
        """Send the request and read the answer's head. A kept connection that the engine closed as it
        was taken is given up and the request sent once more on a new one (it never reached the engine)."""
        host, port = _address(base_url)
        conn = self._kept(host, port)
        if conn is not None:
            try:
                return await self._send(conn, host, port, path, body, reused=True)
            except UpstreamError as exc:
                if not exc.stale:
                    raise
                self.resent += 1
        return await self._send(await self._open(host, port), host, port, path, body, reused=False)

    async def _send(self, conn: _Connection, host: str, port: int, path: str, body: bytes, *,
                    reused: bool) -> "Response":
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = (f"POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n"
                f"accept-encoding: identity\r\ncontent-length: {len(body)}\r\n\r\n").encode("latin-1")
        response = Response(self, (host, port), conn, reused)
        try:
            conn.transport.write(head + body)
            await response._head()
        except BaseException:
            await response.aclose()  # closed at once: an engine that got the request aborts it
            raise
        return response

    def _kept(self, host: str, port: int) -> _Connection | None:
        idle = self.idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _open(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, host, port), self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port} ({type(exc).__name__}: {exc})",
                                connect=True) from exc
        return conn

    def _keep(self, address: tuple[str, int], conn: _Connection) -> None:
        idle = self.idle.setdefault(address, [])
        if len(idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        for idle in self.idle.values():
            for conn in idle:
                conn.close()
        self.idle.clear()


class Response:
    """An answer being read: status, headers, then body() once. aclose() when done: an answer read to the
    end its framing gave leaves its connection for the next request; any other closes it (the engine aborts).

    The httptools parser calls the on_* methods while it is fed."""

    def __init__(self, pool: Pool, address: tuple[str, int], conn: _Connection, reused: bool):
        self._pool, self._address, self._conn, self._reused = pool, address, conn, reused
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self._parts: list[bytes] = []  # body data arrived and not yet taken (this list, never another)
        self.on_body = self._parts.append  # the parser's call for each piece of body: a builtin, not a method
        self._buffered = 0  # about the bytes in _parts (counted by read, framing included)
        self._parser = httptools.HttpResponseParser(self)
        self._seen = 0  # bytes received before the head was complete
        self._has_head = False
        self._until_close = False  # the body ends with the connection (no content-length, not chunked)
        self._chunked = False
        self._complete = False  # the parser saw the answer's end
        self._keep_alive = False
        self._paused = False
        self._failure: UpstreamError | None = None
        self._waiter: asyncio.Future | None = None
        self._body_started = False  # the first byte of body came: from then on the idle timeout applies
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()  # the last sign of life: the request sent, or bytes received
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(
            self._last + pool.first_byte_timeout, self._on_timer)
        conn.response = self

    # --- the parser's callbacks ------------------------------------------------------------------
    def on_message_begin(self):
        if self._complete:  # a second answer on the same bytes: nothing asked for it
            raise ValueError("bytes after the end of the answer")

    def on_header(self, name: bytes, value: bytes):
        name = name.decode("latin-1").lower()
        value = value.decode("latin-1")
        # A repeated header is one list (RFC 9110 5.3): never the last one silently.
        self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value

    def on_headers_complete(self):
        version = self._parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise ValueError(f"not an HTTP/1 answer (HTTP/{version})")
        self.status_code = self._parser.get_status_code()
        codings = self.headers.get("transfer-encoding", "")
        self._chunked = codings.rsplit(",", 1)[-1].strip().lower() == "chunked"
        self._until_close = not self._chunked and "content-length" not in self.headers and self.status_code >= 200
        self._has_head = True

    def on_message_complete(self):
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()

    # --- the connection's events -----------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        self._last = self._loop.time()
        if self._complete:
            self._fail(UpstreamError("bytes after the end of the answer", malformed=True))
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__ if isinstance(exc.__context__, ValueError) else exc
            self._fail(UpstreamError(f"malformed answer: {cause}", malformed=True))
            return
        if not self._has_head:
            self._seen += len(data)
            if self._seen > MAX_HEAD:
                self._fail(UpstreamError(f"the answer's head is over {MAX_HEAD} bytes", malformed=True))
                return
        else:
            self._buffered += len(data)
            if not self._body_started and (self._parts or self._complete):
                self._body_started = True  # from now on the idle timeout: the timer is set for it once
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = self._loop.call_at(self._last + self._pool.idle_timeout, self._on_timer)
            if self._buffered > HIGH_WATER and not self._paused:
                self._paused = True  # the client reads slower than the engine writes: let TCP hold it back
                self._conn.transport.pause_reading()
        self._wake()

    def _lost(self) -> None:
        if self._complete:
            return
        if self._has_head and self._until_close:
            self._complete = True  # the body that ends with the connection has ended
        elif self._failure is None:
            stale = self._reused and not self._seen and not self._has_head
            where = "mid-answer" if self._has_head else "before an answer"
            self._failure = UpstreamError(f"the engine closed the connection {where}", stale=stale)
        self._wake()

    def _on_timer(self) -> None:
        self._timer = None
        if self._complete or self._failure is not None or self._conn is None:
            return
        if self._paused:  # waiting for the client, not for the engine
            self._last = self._loop.time()
        limit = self._pool.idle_timeout if self._body_started else self._pool.first_byte_timeout
        due = self._last + limit
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        what = "between two parts of its answer" if self._body_started else "before starting its answer"
        self._fail(UpstreamError(f"the engine sent nothing for {limit:g} s {what}", timeout=True))

    def _fail(self, failure: UpstreamError) -> None:
        if self._failure is None:
            self._failure = failure
        if self._conn is not None:
            self._conn.close()  # never reused; an engine still generating aborts
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # --- reading -----------------------------------------------------------------------------------
    async def _head(self) -> None:
        while not self._has_head:
            if self._failure is not None:
                raise self._failure
            await self._wait()

    def _take(self) -> bytes:
        """What has arrived, up to about MAX_PART bytes (whole pieces as the parser gave them)."""
        parts = self._parts
        if len(parts) == 1 or self._buffered <= MAX_PART:
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            self._buffered = 0
        else:
            size = count = 0
            while count < len(parts) and (not count or size + len(parts[count]) <= MAX_PART):
                size += len(parts[count])
                count += 1
            data = b"".join(parts[:count])
            del parts[:count]
            self._buffered = sum(map(len, parts))
        if self._paused and self._buffered <= HIGH_WATER and self._conn is not None:
            self._paused = False
            self._last = self._loop.time()
            self._conn.transport.resume_reading()
        return data

    async def body(self):
        """The body's bytes as they arrive (chunked framing removed): all that arrived since the last part
        goes out as one part (under load an engine's events arrive several to a read, and each part passed
        on costs a send to the client; the bytes and their order are the engine's). Nothing that has arrived
        is held back. Raises UpstreamError if the engine breaks off, times out, or its framing is broken:
        in a chunked answer after the data before the fault (whole events a client can use); in one of a
        given length without the part that came with the fault (a partial JSON body is of no use)."""
        while True:
            if self._parts and (self._failure is None or self._chunked):
                yield self._take()
            elif self._failure is not None:
                raise self._failure
            elif self._complete:
                return
            else:
                await self._wait()

    async def aread(self) -> bytes:
        return b"".join([data async for data in self.body()])

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.response = None
        self._parser = None  # it holds this object's methods: without the cycle, freed at once, not by the GC
        # Reused only when the whole answer was read (the terminating chunk or the last byte of its length
        # arrived and every part was taken) and nothing went wrong.
        if self._complete and not self._parts and self._failure is None and self._keep_alive and conn.open:
            self._pool._keep(self._address, conn)
        else:
            conn.close()


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise UpstreamError(f"the engine's address {base_url!r} is not http://host:port", connect=True)
    return parts.hostname, parts.port or 80


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool]" = weakref.WeakKeyDictionary()


def pool(connect_timeout: float, first_byte_timeout: float = FIRST_BYTE_TIMEOUT,
         idle_timeout: float = IDLE_TIMEOUT) -> Pool:
    """The connection pool of the running event loop (connections cannot cross loops), with these timeouts."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = Pool(connect_timeout)
    found.connect_timeout, found.first_byte_timeout, found.idle_timeout = (connect_timeout, first_byte_timeout,
                                                                           idle_timeout)
    return found
