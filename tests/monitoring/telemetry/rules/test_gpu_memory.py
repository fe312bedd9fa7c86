"""GPU memory above 95 % for 2 minutes: an orange incident and a restart of the engine on that GPU.

Here the engine itself grew past what it reserved (the leak or fragmentation a restart cures); who else
may fill a GPU, and when that withholds the restart, is in test_telemetry_rules_gpu_memory_owner.py.
"""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from inference.models import Engine
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import INTERVAL, cycle, gpu, open_incident, proc, queued_control_tasks, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0")


def memory(percent):
    # The engine holds all but 0.1 GiB of what is used: past its 90 % reservation when the GPU is full.
    return lambda: cycle(gpus=[gpu(0, memory=percent, processes=[
        proc(100, 24 * percent / 100 - 0.1, "VLLM::EngineCore", engine_id=Engine.objects.get().pk)]),
        gpu(1, memory=20)])


def test_raised_after_two_minutes_not_before_and_the_engine_restarts(clock, engine):
    clock.run(110, memory(97))
    assert open_incident("gpu-memory") is None
    assert Engine.objects.get().restart_generation == 0
    clock.step(memory(97))  # 120 s of cycles above the threshold
    incident = open_incident("gpu-memory")
    assert (incident.level, incident.kind) == (Level.ORANGE, Incident.Kind.GPU)
    assert incident.title == "GPU 0 memory above 95 %"
    assert incident.message == ("GPU 0 (engine glm) memory at 97.0 % (23.3 of 24.0 GiB) for 2 min; "
                                "engine glm restarted at 2026-03-01 12:02:00 UTC")
    # The pool's normal restart path: a new generation asked for and the host's queue kicked.
    assert Engine.objects.get().restart_generation == 1
    assert queued_control_tasks(engine) == 1
    clock.run(300, memory(97))  # still high: one restart per incident, not one per cycle
    assert Engine.objects.get().restart_generation == 1
    assert Incident.objects.count() == 1


def test_resolves_only_once_clearly_below_for_the_clear_duration(clock, engine):
    clock.run(120, memory(97))
    assert open_incident("gpu-memory")
    clock.run(300, memory(94))  # below 95 but within the 2-point margin: still raised, no flapping
    assert open_incident("gpu-memory")
    clock.run(50, memory(60))
    assert open_incident("gpu-memory"), "resolved before the clear duration"
    changes = clock.run(10, memory(60))
    assert [c.raised for c in changes] == [False]
    assert open_incident("gpu-memory") is None
    assert [e.kind for e in Incident.objects.get().events.all()] == ["opened", "resolved"]


def test_a_gap_in_the_data_is_not_time_above_the_threshold(clock, engine):
    clock.run(60, memory(97))
    clock.skip(180)  # the sampler was down for 3 minutes
    clock.run(110, memory(97))  # 4:50 since the first sighting, but only 110 s of continuous data
    assert open_incident("gpu-memory") is None
    clock.step(memory(97))
    assert open_incident("gpu-memory")


def test_the_restart_flag_and_the_rule_switch(clock, engine, rule_settings):
    rule_settings.gpu_memory_restart = False
    rule_settings.save()
    clock.run(120, memory(99))
    incident = open_incident("gpu-memory")
    assert "restarted" not in incident.message
    assert Engine.objects.get().restart_generation == 0 and queued_control_tasks(engine) == 0
    rule_settings.gpu_memory_enabled = False
    rule_settings.save()
    clock.step(memory(99))  # switched off: its open incident resolves rather than hanging forever
    incident.refresh_from_db()
    assert incident.resolved_at is not None
    clock.run(600, memory(99))
    assert open_incident("gpu-memory") is None


def test_a_gpu_without_an_engine_is_raised_but_restarts_nothing(clock, engine):
    clock.run(120, lambda: cycle(gpus=[gpu(0, memory=50), gpu(1, memory=99)]))
    incident = open_incident("gpu-memory")
    assert incident.title == "GPU 1 memory above 95 %" and "restarted" not in incident.message
    assert Engine.objects.get().restart_generation == 0


def test_a_threshold_change_applies_at_the_next_cycle(clock, engine, rule_settings):
    clock.run(300, memory(90))
    assert open_incident("gpu-memory") is None
    rule_settings.gpu_memory_percent = 85
    rule_settings.gpu_memory_seconds = 2 * INTERVAL
    rule_settings.save()
    clock.run(20, memory(90))
    assert open_incident("gpu-memory").title == "GPU 0 memory above 85 %"
