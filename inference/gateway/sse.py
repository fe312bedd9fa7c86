"""Server-sent events as the engines send them: events end with a blank line."""

from collections.abc import AsyncIterable, AsyncIterator


async def sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Each SSE event's data field from a byte stream, split on blank lines only (model output can
    contain U+2028/U+0085, so never splitlines()); yields "[DONE]" too."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:  # CRLF line ends are allowed too; replaced on the whole buffer, as a pair can be split
            buffer = buffer.replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            data = event_data(event)
            if data is not None:
                yield data
    data = event_data(buffer)
    if data is not None:
        yield data


def event_data(event: bytes) -> str | None:
    """The data of one event (its data: lines joined by \\n), None for a comment-only or empty event."""
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return "\n".join(line[5:].removeprefix(b" ").decode("utf-8") for line in lines)
