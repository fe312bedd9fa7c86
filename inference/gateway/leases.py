"""Keeping a running request's slots counted: a short lease, renewed while the request lasts.

A request counts against its caller's concurrency and its engine's in-flight number
through sorted-set members scored by lease end (GATEWAY_REQUEST_LEASE seconds ahead).
While the request waits or streams, one task per event loop moves the lease end of
all its process's requests forward every quarter lease, in one pipeline (ZADD XX:
a member already released is not added back). When a web process is killed, its
requests stop being renewed and stop counting within one lease.
"""

import asyncio
import logging
import time
import weakref

from django.conf import settings

from . import redis_state

log = logging.getLogger(__name__)

class _Held:
    """The requests of one event loop: request id -> the sorted sets it is a member of. A timer (not a
    task: nothing is left pending when a loop closes with no request held) wakes every quarter lease."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.keys: dict[str, list[str]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.renewing: asyncio.Task | None = None

    def arm(self) -> None:
        if self.timer is None and self.keys:
            self.timer = self.loop.call_later(settings.GATEWAY_REQUEST_LEASE / 4, self.fire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def fire(self) -> None:
        self.timer = None
        if self.keys and (self.renewing is None or self.renewing.done()):
            self.renewing = self.loop.create_task(self.renew())

    async def renew(self) -> None:
        lease = settings.GATEWAY_REQUEST_LEASE
        try:
            await renew(self.keys, time.time() + lease, lease)
        except Exception:  # Redis away for a moment: the next quarter lease tries again
            log.warning("gateway: renewing the leases of %d request(s) failed", len(self.keys), exc_info=True)
        finally:
            self.arm()


_held: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Held]" = weakref.WeakKeyDictionary()


def _of_loop() -> _Held:
    loop = asyncio.get_running_loop()
    held = _held.get(loop)
    if held is None:
        held = _held[loop] = _Held(loop)
    return held


def hold(request_id: str, *keys: str) -> None:
    """Renew the request's membership of these sorted sets until drop()."""
    held = _of_loop()
    held.keys[request_id] = list(keys)
    held.arm()


def add(request_id: str, key: str) -> None:
    """One more sorted set the request is a member of (the engine it was routed to)."""
    held = _of_loop()
    if request_id in held.keys:
        held.keys[request_id].append(key)


def drop(request_id: str) -> None:
    held = _of_loop()
    held.keys.pop(request_id, None)
    if not held.keys:
        held.disarm()


async def renew(keys: dict[str, list[str]], lease_end: float, lease: int) -> None:
    pipe = redis_state.client().pipeline(transaction=False)
    touched = set()
    for request_id, sets in list(keys.items()):
        for key in sets:
            pipe.zadd(key, {request_id: lease_end}, xx=True)
            touched.add(key)
    for key in touched:
        pipe.expire(key, lease)
    await pipe.execute()
