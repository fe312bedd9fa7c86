"""An engine's streamed answer on its way to a chat page: read as fast as the engine writes, sent at a
bounded pace.

A GPU engine writes hundreds of tokens a second, and vLLM's API server on a busy CPU machine hands on
thousands at once, in bursts seconds apart. One websocket message a token would keep the page's main thread
busy with messages (it then stops answering clicks such as Stop) and cost the server a send per token for
every open chat. So the first
text goes out at once, and after each message whatever arrives during the next PACE seconds goes out
together in one message. Nothing is held back longer than that (the end of the answer goes out at once); a
slow engine's tokens still go one by one.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable

from inference.gateway.sse import sse_data

PACE = 0.025  # seconds between messages to the page: at most 40 a second, smooth to read


class AnswerError(Exception):
    """(code, message) of an answer the engine refused or broke off."""


class Answer:
    """What the engine sent so far: text not yet passed on, finish_reason and usage."""

    def __init__(self):
        self.parts: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self.arrived = asyncio.Event()  # set by new text and by the end of the stream

    async def read(self, upstream) -> None:
        """Collects the deltas of upstream's SSE stream until [DONE]; an error event raises AnswerError."""
        try:
            async for data in sse_data(upstream.chunks()):
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event or event.get("object") == "error":
                    error = event.get("error", event)
                    raise AnswerError("upstream_error", f"The engine failed: {error.get('message', error)}")
                self.usage = event.get("usage") or self.usage
                for choice in event.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        self.parts.append(text)
                        self.arrived.set()
                    self.finish_reason = choice.get("finish_reason") or self.finish_reason
        finally:
            self.arrived.set()  # the end, or a failure, wakes the sender too

    def take(self) -> str:
        text, self.parts = "".join(self.parts), []
        return text


async def relay(upstream, send: Callable[[str], Awaitable[None]], pace: float = PACE):
    """Passes the answer's text to send(text) at most once per pace; returns (finish_reason, usage).
    Text that arrived before an error or the end is sent first; then the error is raised."""
    answer = Answer()
    reader = asyncio.create_task(answer.read(upstream))
    try:
        while True:
            await answer.arrived.wait()
            answer.arrived.clear()
            finished = reader.done()  # looked at before taking: a finished reader's text is all taken now
            if text := answer.take():
                await send(text)
            if finished:
                reader.result()  # raises what ended the stream early
                return answer.finish_reason, answer.usage
            # The pace: what arrives meanwhile goes in the next message; the end of the answer cuts it short.
            await asyncio.wait([reader], timeout=pace)
    finally:
        reader.cancel()  # stopped, or the page left: stop reading the engine
        await asyncio.gather(reader, return_exceptions=True)
