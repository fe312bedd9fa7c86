"""The gateway's shared state in Redis: names of its keys and one async client per event loop.

Everything a request needs to be admitted and routed is in Redis (admission flag,
routing table, API keys, limits, in-flight requests), so the hot path never
touches the database.
"""

import asyncio
import weakref

import redis.asyncio as aioredis
from django.conf import settings

from glmadmin.lib import redis as rd

_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[aioredis.Redis, dict]]" = (
    weakref.WeakKeyDictionary())


def _of_loop() -> tuple[aioredis.Redis, dict]:
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        # Not a BlockingConnectionPool: its lock and timeout per command cost more CPU than the command.
        # A process never has more commands waiting at once than requests in flight, far below the cap.
        pool = aioredis.ConnectionPool.from_url(settings.REDIS_URL, decode_responses=True,
                                                max_connections=2000, socket_timeout=5)
        found = _clients[loop] = (aioredis.Redis(connection_pool=pool), {})
    return found


def client() -> aioredis.Redis:
    """The async Redis client of the running event loop (an asyncio client cannot cross loops)."""
    return _of_loop()[0]


def script(source: str):
    """A Lua script registered with this loop's client (run by its SHA, loaded once)."""
    redis_client, scripts = _of_loop()
    if source not in scripts:
        scripts[source] = redis_client.register_script(source)
    return scripts[source]


ADMISSION = "admission"  # alerts.admission's key


def routes_key() -> str:
    return rd.key("gw", "routes")


def keys_key() -> str:
    return rd.key("gw", "keys")


def inflight_prefix() -> str:
    """+ engine name: a sorted set of the gateway's requests in flight on that engine (score: lease end)."""
    return rd.key("gw", "inflight", "")


def inflight_key(engine_name: str) -> str:
    return inflight_prefix() + engine_name


SYNCED = "_synced"  # a field in the routes and keys hashes: the hash was filled from the database


def after_commit(publish) -> None:
    """Write to Redis once the database change is committed. A save never fails because Redis is down
    (e.g. `manage.py ensure_demo_engine` before the stack's Redis runs): the gateway rebuilds a missing
    table from the database, so a lost write is logged, not raised."""
    import logging

    from django.db import transaction
    from redis.exceptions import RedisError

    def write():
        try:
            publish()
        except RedisError as exc:
            logging.getLogger(__name__).warning(
                "gateway: %s not written to Redis (%s); the gateway rebuilds a missing table from the database",
                publish.__module__, exc)

    transaction.on_commit(write)
