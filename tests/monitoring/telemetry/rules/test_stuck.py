"""An engine with requests in flight and no token generated for 60 s is stuck: restarted, orange incident."""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from inference.models import Engine
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, open_incident, queued_control_tasks, reading, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="")  # stuck needs no GPU: a CPU engine hangs just as well


def engine_cycle(engine, **values):
    return lambda: cycle(engines=[reading(engine, **values)])


def test_stuck_after_60_s_not_before_then_restarted(clock, engine):
    stuck = engine_cycle(engine, requests_waiting=4.0, requests_running=0.0, generation_tokens_per_s=0.0)
    clock.run(50, stuck)
    assert open_incident("stuck") is None
    clock.step(stuck)
    incident = open_incident("stuck")
    assert (incident.level, incident.kind, incident.title) == (Level.ORANGE, Incident.Kind.ENGINE, "Engine glm stuck")
    assert incident.message == ("engine glm has 4 request(s) waiting and 0 running but generated no token for 60 s; "
                                "engine glm restarted at 2026-03-01 12:01:00 UTC")
    assert Engine.objects.get().restart_generation == 1 and queued_control_tasks(engine) == 1


def test_idle_or_busy_engines_are_not_stuck(clock, engine):
    clock.run(300, engine_cycle(engine, requests_waiting=0.0, requests_running=0.0, generation_tokens_per_s=0.0))
    clock.run(300, engine_cycle(engine, requests_waiting=5.0, requests_running=8.0, generation_tokens_per_s=140.0))
    clock.run(300, engine_cycle(engine, requests_waiting=None, requests_running=None, generation_tokens_per_s=0.0))
    assert not Incident.objects.exists() and Engine.objects.get().restart_generation == 0


def test_a_running_request_that_produces_nothing_counts_too(clock, engine):
    clock.run(60, engine_cycle(engine, requests_waiting=0.0, requests_running=2.0, generation_tokens_per_s=0.0))
    assert open_incident("stuck")


def test_resolves_when_tokens_flow_again(clock, engine):
    clock.run(60, engine_cycle(engine, requests_waiting=4.0, generation_tokens_per_s=0.0))
    clock.run(50, engine_cycle(engine, requests_waiting=0.0, requests_running=4.0, generation_tokens_per_s=90.0))
    assert open_incident("stuck")
    clock.step(engine_cycle(engine, requests_waiting=0.0, requests_running=4.0, generation_tokens_per_s=90.0))
    assert open_incident("stuck") is None


def test_restart_switched_off_still_raises(clock, engine, rule_settings):
    rule_settings.stuck_restart = False
    rule_settings.save()
    clock.run(60, engine_cycle(engine, requests_waiting=4.0, generation_tokens_per_s=0.0))
    assert "restarted" not in open_incident("stuck").message
    assert Engine.objects.get().restart_generation == 0 and queued_control_tasks(engine) == 0


def test_a_removed_or_disabled_engine_takes_its_incidents_along(clock, engine):
    clock.run(60, engine_cycle(engine, requests_waiting=4.0, generation_tokens_per_s=0.0))
    Engine.objects.filter(pk=engine.pk).update(enabled=False)
    clock.step(lambda: cycle())
    assert open_incident("stuck") is None
