"""A running request's slots stay counted while it runs (the lease is renewed), and only while it runs."""

import asyncio
import time

from asgiref.sync import async_to_sync

from glmadmin.lib import redis as rd
from inference.gateway import leases

KEY = "test-lease-set"


def test_a_held_request_is_renewed_past_its_lease_and_a_released_one_is_not_added_back(settings):
    settings.GATEWAY_REQUEST_LEASE = 2  # renewed every 0.5 s
    client = rd.client()
    key = rd.key(KEY)
    start = time.time()
    client.zadd(key, {"running": start + 2, "released": start + 2})

    async def scenario():
        leases.hold("running", key)
        leases.hold("released", key)
        client.zrem(key, "released")  # released elsewhere (the request ended) while still registered
        deadline = time.monotonic() + 30
        # Past the first lease's end the request still counts: its lease end moved ahead.
        while time.time() < start + 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)  # the pace of looking, not a wait for an event
        score = client.zscore(key, "running")
        leases.drop("running")
        leases.drop("released")
        return score

    score = async_to_sync(scenario)()
    assert score is not None and score > time.time()
    assert client.zscore(key, "released") is None  # ZADD XX: never added back
    assert client.ttl(key) > 0
