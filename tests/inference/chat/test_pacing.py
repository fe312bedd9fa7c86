"""The chat's answer relay: text at once, then what arrives within one pace in one message, the end at once."""

import asyncio
import json

import pytest

from inference.chat import stream


def event(text: str) -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {"content": text}, "finish_reason": None}]}).encode() + b"\n\n"


class FakeRelay:
    """An answer's SSE bytes, the way the gateway's Relay hands them on; after the first chunk the
    rest waits for the test to open the gate."""

    def __init__(self, first: list[bytes], rest: list[bytes]):
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()
        self.closed = False

    async def chunks(self):
        try:
            for chunk in self.first:
                yield chunk
            await self.gate.wait()
            for chunk in self.rest:
                yield chunk
        finally:
            self.closed = True


DONE = [b'data: {"choices": [{"delta": {}, "finish_reason": "length"}], "usage": {"completion_tokens": 4}}\n\n',
        b"data: [DONE]\n\n"]


async def test_first_text_at_once_then_what_arrives_within_the_pace_together_and_the_end_at_once():
    upstream = FakeRelay([event("a")], [event("b"), event("c"), event("d"), *DONE])
    sent, first_sent = [], asyncio.Event()

    async def send(text):
        sent.append(text)
        first_sent.set()

    relay = asyncio.create_task(stream.relay(upstream, send, pace=3600))  # no pace ends during the test
    await first_sent.wait()
    assert sent == ["a"]  # at once, not after a pace
    upstream.gate.set()  # b, c, d and the end arrive while the relay keeps its pace
    assert await asyncio.wait_for(relay, timeout=10) == ("length", {"completion_tokens": 4})
    assert sent == ["a", "bcd"]  # one message for them, sent as the answer ended, not an hour later


async def test_text_before_an_error_goes_out_then_the_error():
    error = b'data: {"error": {"message": "engine core died"}}\n\n'
    upstream = FakeRelay([event("a"), event("b"), error], [])
    sent = []

    async def send(text):
        sent.append(text)

    with pytest.raises(stream.AnswerError) as raised:
        await asyncio.wait_for(stream.relay(upstream, send, pace=3600), timeout=10)
    assert "".join(sent) == "ab"
    assert raised.value.args == ("upstream_error", "The engine failed: engine core died")


async def test_stop_ends_the_reading_of_the_engine():
    upstream = FakeRelay([event("a")], [event("never")])
    first_sent = asyncio.Event()

    async def send(text):
        first_sent.set()

    relay = asyncio.create_task(stream.relay(upstream, send))
    await first_sent.wait()
    relay.cancel()  # the user pressed Stop
    done, _ = await asyncio.wait([relay], timeout=10)
    assert done and relay.cancelled()
    assert upstream.closed  # the reader let go of the stream: nothing reads the engine any more
