""""For N minutes" lives in Redis, not in a worker; if Redis loses it, the open incidents stand in."""

import json

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from alerts.models import Incident
from glmadmin.lib import redis as rd
from monitoring.telemetry.rules import evaluate as rules
from monitoring.telemetry.rules.state import hash_key
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import START, cycle, gpu, open_incident, proc, reading, ready_engine

clock = support.clock  # a fixture of this module


def memory(percent):
    return lambda: cycle(gpus=[gpu(0, memory=percent)])


def forget_everything_in_redis():
    client = rd.client()
    for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}:telemetry:*"):
        client.delete(key)


def test_a_streak_is_kept_in_redis_where_any_worker_finds_it(clock):
    clock.run(60, memory(97))
    stored = rd.client().hgetall(hash_key("local"))
    track = json.loads(stored["telemetry:local:gpu0:gpu-memory"])
    assert (track["streak"], track["since"], track["count"], track["firing"]) == ("true", START.timestamp(), 7, False)
    clock.run(60, memory(97))
    assert open_incident("gpu-memory")


def test_after_redis_lost_its_state_open_incidents_still_resolve(clock):
    clock.run(120, memory(97))
    assert open_incident("gpu-memory")
    forget_everything_in_redis()
    clock.run(600, memory(97))
    assert Incident.objects.count() == 1, "the raised condition is known again: no second incident"
    clock.run(60, memory(50))
    assert open_incident("gpu-memory") is None


def test_after_redis_lost_its_state_a_streak_starts_again(clock):
    clock.run(100, memory(97))
    forget_everything_in_redis()
    clock.run(110, memory(97))
    assert open_incident("gpu-memory") is None
    clock.step(memory(97))
    assert open_incident("gpu-memory")


def test_the_state_stays_small(clock):
    engine = ready_engine("glm", gpu_ids="0")
    clock.run(300, lambda: cycle(gpus=[gpu(0, memory=50, processes=[proc(7, 0.1)])], engines=[reading(engine)]))
    stored = rd.client().hgetall(hash_key("local"))
    # Conditions that are clear leave nothing behind; the engine run's TTFT baseline stays.
    assert set(stored) == {"_init", f"baseline:{engine.pk}"}
    engine.delete()
    clock.step(lambda: cycle(gpus=[gpu(0, memory=50)]))
    assert set(rd.client().hgetall(hash_key("local"))) == {"_init"}


def test_a_cycle_costs_two_queries_however_many_gpus_and_engines(clock):
    a, b = ready_engine("a", gpu_ids="0,1", port=8165), ready_engine("b", gpu_ids="2,3", port=8166)
    gpus = [gpu(i, memory=80, util=60, processes=[proc(100 + i, 20, engine_id=(a if i < 2 else b).pk)])
            for i in range(4)]

    def busy():
        return cycle(gpus=gpus, engines=[reading(a, ttft_p95=0.3, generation_tokens_per_s=80, requests_running=2),
                                         reading(b, ttft_p95=0.3, generation_tokens_per_s=80, requests_running=2)])

    clock.run(60, busy)
    clock.skip(10)
    with CaptureQueriesContext(connection) as queries:
        rules.evaluate(busy())
    assert len(queries) == 2, [q["sql"] for q in queries]
