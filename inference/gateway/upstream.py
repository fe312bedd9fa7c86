"""A small HTTP/1.1 client for the engines: POST a JSON body, read the answer as it comes.

Why not httpx: per request and per chunk it costs several times what the gateway
itself does (its pure-Python h11 parser sees every SSE event). The engines speak
plain HTTP/1.1 on a trusted network: a status line, headers, then a body framed
by content-length, chunked encoding, or the connection's end.

Connections are kept per engine address for KEEPALIVE seconds, less than vLLM's
uvicorn keeps an idle connection (5 s), so a kept connection is rarely dead. One
that is (closed by the engine as it was being reused) fails with
UpstreamError(stale=True) before any byte of an answer: safe to send again.
"""

import asyncio
import time
import weakref
from urllib.parse import urlsplit

KEEPALIVE = 4.0  # seconds an idle connection is kept: below vLLM's (uvicorn's) 5 s
MAX_IDLE = 256  # idle connections kept per engine
READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024


class UpstreamError(Exception):
    """The engine could not be reached or broke off. connect: no connection was made; stale: a kept
    connection turned out closed before any byte of the answer (the request can be sent again)."""

    def __init__(self, message: str, *, connect: bool = False, stale: bool = False):
        super().__init__(message)
        self.connect, self.stale = connect, stale


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def usable(self, now: float) -> bool:
        return (now - self.idle_since < KEEPALIVE and not self.reader.at_eof()
                and not self.writer.transport.is_closing())

    def close(self) -> None:
        self.writer.transport.abort()  # at once: a request still running upstream sees its client gone


class Pool:
    """Kept connections of one event loop, per (host, port)."""

    def __init__(self, connect_timeout: float):
        self.connect_timeout = connect_timeout
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

    async def _send(self, conn: "_Connection", host: str, port: int, path: str, body: bytes, *,
                    reused: bool) -> "Response":
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = (f"POST {path} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n"
                f"accept-encoding: identity\r\ncontent-length: {len(body)}\r\n\r\n").encode("latin-1")
        response = Response(self, (host, port), conn)
        try:
            conn.writer.write(head + body)
            await response._read_head()
        except BaseException as exc:
            response._discard()  # closed at once: an engine that got the request aborts it
            if isinstance(exc, (OSError, asyncio.IncompleteReadError, ValueError)):
                raise UpstreamError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                                    stale=reused and not response._head_started) from exc
            raise
        return response

    def _kept(self, host: str, port: int) -> "_Connection | None":
        idle = self.idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been closed
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def _open(self, host: str, port: int) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=MAX_HEAD),
                                                    self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port} ({type(exc).__name__}: {exc})",
                                connect=True) from exc
        return _Connection(reader, writer)

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
    """An answer being read: status, headers, then body() once. aclose() when done: a fully read answer
    leaves its connection for the next request; an unfinished one closes it (the engine aborts)."""

    def __init__(self, pool: Pool, address: tuple[str, int], conn: _Connection):
        self._pool, self._address, self._conn = pool, address, conn
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self._head_started = False
        self._done = False  # the whole body was read
        self._keep_alive = True
        self._buffer = b""  # bytes read past the head
        self._length: int | None = None
        self._chunked = False

    async def _read_head(self) -> None:
        reader = self._conn.reader
        data = await reader.read(READ_SIZE)
        if not data:
            raise ConnectionResetError("the connection was closed before an answer")
        self._head_started = True
        while b"\r\n\r\n" not in data:
            if len(data) > MAX_HEAD:
                raise ValueError("the answer's head is too large")
            more = await reader.read(READ_SIZE)
            if not more:
                raise asyncio.IncompleteReadError(data, None)
            data += more
        head, _, self._buffer = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, status, *_ = status_line.split(" ", 2)
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1 answer: {status_line[:80]!r}")
        self.status_code = int(status)
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._keep_alive = version == "HTTP/1.1" and self.headers.get("connection", "").lower() != "close"
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in self.headers:
            self._length = int(self.headers["content-length"])
        else:
            self._keep_alive = False  # the body ends with the connection

    async def body(self):
        """The body's bytes as they arrive (chunked framing removed). Raises UpstreamError if the
        engine breaks off."""
        try:
            if self._chunked:
                async for data in self._dechunked():
                    yield data
            else:
                async for data in self._plain():
                    yield data
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._keep_alive = False
            raise UpstreamError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        self._done = True

    async def _plain(self):
        left = self._length
        data, self._buffer = self._buffer, b""
        while True:
            if data:
                if left is not None:
                    data, left = data[:left], left - len(data)
                yield data
            if left is not None and left <= 0:
                return
            data = await self._conn.reader.read(READ_SIZE)
            if not data:
                if left is not None:
                    raise asyncio.IncompleteReadError(b"", left)
                return

    async def _dechunked(self):
        """Chunked transfer coding, parsed as bytes arrive (dechunk). The data of the chunks that one read
        brought is passed on at once, before waiting for more: under load an engine's events arrive several
        to a read, and each part passed on costs a send to the client (the bytes and their order are the
        engine's, only fewer, larger writes). Nothing that has arrived is held back."""
        buffer, left = self._buffer, None
        while True:
            data, buffer, left = dechunk(buffer, left)
            if data:
                yield data
                continue  # parse again before reading: bad framing after the data raises now, not after a read
            if left == END:
                await self._trailers(buffer)
                return
            buffer = await self._more(buffer)

    async def _more(self, buffer: bytes) -> bytes:
        data = await self._conn.reader.read(READ_SIZE)
        if not data:
            raise asyncio.IncompleteReadError(buffer, None)
        return buffer + data if buffer else data

    async def _trailers(self, buffer: bytes) -> None:
        """Skip optional trailer lines up to the final blank line."""
        while True:
            end = buffer.find(b"\r\n")
            if end == 0:
                if len(buffer) > 2:
                    self._keep_alive = False  # bytes after the answer: the connection is not clean
                return
            if end > 0:
                buffer = buffer[end + 2:]
                continue
            buffer = await self._more(buffer)

    async def aread(self) -> bytes:
        return b"".join([data async for data in self.body()])

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done and self._keep_alive:
            self._pool._keep(self._address, conn)
        else:
            conn.close()


END = -1  # dechunk's "left" once the last chunk (size 0) was read


def dechunk(buffer: bytes, left: int | None) -> tuple[bytes, bytes, int | None]:
    """Takes the chunked framing ("<hex size>[;ext]\\r\\n<data>\\r\\n" ... "0\\r\\n") off as much of buffer as
    has arrived. left says where the parse stands: None at a size line, > 0 the bytes of the chunk's data
    still to come, 0 at the CRLF after the data, END after the last chunk. Returns (data, rest of buffer,
    left). Bad framing raises ValueError, but only once the data before it was returned."""
    parts = []
    while left != END:
        if left is None:
            end = buffer.find(b"\r\n")
            if end < 0 and len(buffer) <= 1024:
                break
            try:
                size = int(buffer[:end].split(b";", 1)[0], 16) if end >= 0 else -1
            except ValueError:
                size = -1
            if size < 0:
                if parts:
                    break
                raise ValueError("bad chunk size line")
            buffer, left = buffer[end + 2:], size or END
        elif left > 0:
            if not buffer:
                break
            parts.append(buffer[:left])
            buffer, left = buffer[left:], max(0, left - len(buffer))
        elif len(buffer) < 2:
            break
        elif buffer[:2] == b"\r\n":
            buffer, left = buffer[2:], None
        elif parts:
            break
        else:
            raise ValueError("bad chunked encoding")
    return b"".join(parts), buffer, left


def _address(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise UpstreamError(f"the engine's address {base_url!r} is not http://host:port", connect=True)
    return parts.hostname, parts.port or 80


_pools: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool]" = weakref.WeakKeyDictionary()


def pool(connect_timeout: float) -> Pool:
    """The connection pool of the running event loop (connections cannot cross loops)."""
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        found = _pools[loop] = Pool(connect_timeout)
    return found
