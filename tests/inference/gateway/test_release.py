"""A request's slots are given back even when its client hangs up while they are being given back."""

import asyncio
import time

from asgiref.sync import async_to_sync

from glmadmin.lib import redis as rd
from inference.gateway import keys, limits, redis_state, relay, stats


class FinishedResponse:
    """An engine's answer that has been read to its end."""

    status_code = 200
    headers = {"content-type": "text/event-stream"}

    async def aclose(self):
        pass


def test_a_cancel_during_the_release_still_releases(monkeypatch):
    caller = keys.Caller("user", 7, "hangs-up")
    busy, inflight = limits.busy_key(caller), redis_state.inflight_key("release-engine")
    client = rd.client()
    for key in (busy, inflight):
        client.zadd(key, {"req-1": time.time() + 60})
    real_finish = stats.finish
    started = {}

    async def finish_with_a_pause(*args):  # the release's round trip, with a point where a cancel can land
        started["event"].set()
        await asyncio.sleep(0)
        await real_finish(*args)

    monkeypatch.setattr(stats, "finish", finish_with_a_pause)

    async def scenario():
        started["event"] = asyncio.Event()
        answer = relay.Relay(caller, "release-engine", "m", FinishedResponse(), None, b"", "req-1",
                               time.perf_counter(), True)
        closing = asyncio.ensure_future(answer.aclose())
        await started["event"].wait()
        closing.cancel()  # the client hung up (the gateway's watcher cancels the request's task)
        await asyncio.gather(closing, return_exceptions=True)
        deadline = time.monotonic() + 30
        while client.zcard(inflight) or client.zcard(busy):
            assert time.monotonic() < deadline, "the slots were left to expire with the lease"
            await asyncio.sleep(0.01)  # lets the release run; polled against a deadline

    async_to_sync(scenario)()
    assert client.zcard(inflight) == 0 and client.zcard(busy) == 0
