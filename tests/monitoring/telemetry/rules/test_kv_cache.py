"""KV-cache usage above 90 % for 5 minutes: a yellow warning that clears with hysteresis."""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from inference.models import Engine, EngineState
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, open_incident, reading, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0")


def kv(engine, percent):
    return lambda: cycle(engines=[reading(engine, kv_cache_usage=percent)])


def test_warning_after_five_minutes_not_before(clock, engine):
    clock.run(290, kv(engine, 93))
    assert open_incident("kv-cache") is None
    clock.step(kv(engine, 93))
    incident = open_incident("kv-cache")
    assert (incident.level, incident.kind) == (Level.YELLOW, Incident.Kind.TELEMETRY)
    assert incident.title == "KV cache of engine glm above 90 %"
    assert incident.message == "KV cache of engine glm 93.0 % used for 5 min"
    assert Engine.objects.get().restart_generation == 0  # a warning only


def test_hovering_at_the_threshold_neither_raises_nor_clears(clock, engine):
    usage = iter([91, 89.5] * 100)  # crosses 90 % at every cycle: never 5 minutes above it
    clock.run(600, lambda: cycle(engines=[reading(engine, kv_cache_usage=next(usage))]))
    assert open_incident("kv-cache") is None
    clock.run(300, kv(engine, 95))
    clock.run(600, kv(engine, 89))  # below 90, but not by the 2-point margin
    assert open_incident("kv-cache")
    clock.run(60, kv(engine, 80))
    assert open_incident("kv-cache") is None
    assert Incident.objects.count() == 1


def test_an_engine_that_is_not_ready_is_not_judged(clock, engine):
    Engine.objects.filter(pk=engine.pk).update(state=EngineState.STARTING)
    clock.run(600, kv(engine, 99))
    assert not Incident.objects.exists()


def test_unknown_readings_break_the_streak(clock, engine):
    clock.run(200, kv(engine, 95))
    clock.run(60, kv(engine, None))  # /metrics gave no KV figure for a minute
    clock.run(290, kv(engine, 95))
    assert open_incident("kv-cache") is None
    clock.step(kv(engine, 95))
    assert open_incident("kv-cache")
