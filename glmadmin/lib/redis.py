"""The one Redis client of a process, and a lock for work that must run once at a time."""

from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, socket_timeout=5)


def key(*parts: str) -> str:
    return ":".join((settings.REDIS_PREFIX, *parts))


@contextmanager
def single_flight(name: str, ttl_seconds: int):
    """Yield True to the one holder of the lock `name`, False to anyone else.

    The TTL bounds how long a crashed holder can block the next run.
    """
    lock = client().lock(key("lock", name), timeout=ttl_seconds, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except redis.exceptions.LockNotOwnedError:
                pass  # it expired while we worked; the next run owns it now
