"""The upstream client passes a chunked answer on byte for byte, the chunks of one read in one part."""

import asyncio

import pytest

from inference.gateway import upstream

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENTS = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def engine(writes: list[bytes], go_on: asyncio.Event | None = None):
    """A one-answer engine: the first write at once, the others after go_on is set (each its own read), or
    right after it when there is no go_on."""

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(writes[0])
        await writer.drain()
        for data in writes[1:]:
            if go_on is not None:
                await go_on.wait()
                go_on.clear()
            writer.write(data)
            await writer.drain()
        await reader.read()  # the gateway closes or keeps the connection; either way, done here
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_the_chunks_of_one_read_come_out_as_one_part_unchanged():
    server, url = await engine([HEAD + b"".join(chunk(e) for e in EVENTS) + b"0\r\n\r\n"])
    pool = upstream.Pool(5)
    try:
        response = await pool.post(url, "/v1/completions", b"{}")
        parts = [part async for part in response.body()]
        await response.aclose()
    finally:
        pool.close()
        server.close()
    assert b"".join(parts) == b"".join(EVENTS)
    assert len(parts) < len(EVENTS)  # several events to a part: fewer sends to the client


async def test_what_arrived_is_passed_on_before_waiting_for_the_rest():
    go_on = asyncio.Event()
    second = chunk(EVENTS[1])
    size_line = len(b"%x\r\n" % len(EVENTS[1]))
    cut = size_line + 5  # the second event's size line and its first 5 bytes
    server, url = await engine([HEAD + chunk(EVENTS[0]) + second[:cut], second[cut:] + b"0\r\n\r\n"], go_on)
    pool = upstream.Pool(5)
    try:
        response = await pool.post(url, "/v1/completions", b"{}")
        body = response.body()
        # Only the first write has been sent: this part came out without waiting for the second.
        assert await anext(body) == EVENTS[0] + EVENTS[1][:5]
        go_on.set()
        rest = [part async for part in body]
        await response.aclose()
    finally:
        pool.close()
        server.close()
    assert b"".join(rest) == EVENTS[1][5:]


async def test_the_events_before_broken_framing_still_go_out_then_the_error():
    server, url = await engine([HEAD + chunk(EVENTS[0]) + chunk(EVENTS[1]) + b"zz\r\n"])
    pool = upstream.Pool(5)
    parts = []
    try:
        response = await pool.post(url, "/v1/completions", b"{}")
        with pytest.raises(upstream.UpstreamError):
            async for part in response.body():
                parts.append(part)
        await response.aclose()
    finally:
        pool.close()
        server.close()
    assert b"".join(parts) == EVENTS[0] + EVENTS[1]


async def test_the_engines_bytes_come_through_wherever_a_send_ends():
    framed = HEAD + b"".join(chunk(e) for e in EVENTS) + b"0\r\n\r\n"
    for at in range(1, len(framed), 5):  # two sends (two reads, unless the kernel joins them), cut every 5th byte
        server, url = await engine([framed[:at], framed[at:]], go_on=None)
        pool = upstream.Pool(5)
        try:
            response = await pool.post(url, "/v1/completions", b"{}")
            assert await response.aread() == b"".join(EVENTS), at
            await response.aclose()
        finally:
            pool.close()
            server.close()
