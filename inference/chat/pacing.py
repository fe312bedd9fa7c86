"""Token text to the page at a steady pace: a fast engine's hundreds of deltas a second become about 40
messages, each drawn once by the browser; a slower engine's tokens still go one by one.

A delta that arrives while the pace allows it is sent at once; one that arrives sooner is held until the
next tick (at most INTERVAL), together with whatever else arrives meanwhile. Nothing is held longer.
"""

import asyncio

INTERVAL = 0.025  # seconds: 40 updates a second is smooth to read and cheap for many open chats


class Paced:
    def __init__(self, send, interval: float = INTERVAL):
        self.send, self.interval = send, interval  # send(text): one message to the page
        self.parts: list[str] = []
        self.next_at = 0.0
        self.timer: asyncio.Task | None = None
        self.lock = asyncio.Lock()  # one send at a time, in order

    async def add(self, text: str):
        self.parts.append(text)
        now = asyncio.get_running_loop().time()
        if now >= self.next_at:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.ensure_future(self._tick(self.next_at - now))

    async def _tick(self, delay: float):
        await asyncio.sleep(delay)
        self.timer = None
        await self.flush()

    async def flush(self):
        async with self.lock:
            if not self.parts:
                return
            text, self.parts = "".join(self.parts), []
            self.next_at = asyncio.get_running_loop().time() + self.interval
            await self.send(text)

    def cancel(self):
        """Stop the timer (no await: safe in a cleanup that may itself be cancelled); held text stays held."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
