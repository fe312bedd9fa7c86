"""Restarts by rules: the pool's normal path, one per engine per cool-down, whichever rule asks."""

import pytest

from inference.models import Engine, EngineState
from monitoring.models import RuleRestart
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, gpu, open_incident, proc, queued_control_tasks, reading, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0")


def own(percent):
    """The engine's process holding nearly all of a GPU `percent` full: past its reservation when full."""
    return [proc(100, 24 * percent / 100 - 0.1, "VLLM::EngineCore", engine_id=Engine.objects.get().pk)]


def memory(percent):
    return lambda: cycle(gpus=[gpu(0, memory=percent, processes=own(percent))])


def generation() -> int:
    return Engine.objects.get().restart_generation


def test_no_second_restart_within_the_cool_down(clock, engine):
    clock.run(120, memory(97))
    assert generation() == 1 and queued_control_tasks(engine) == 1
    clock.run(60, memory(50))
    assert open_incident("gpu-memory") is None
    clock.run(120, memory(97))  # raised again 3 minutes after the restart
    message = open_incident("gpu-memory").message
    assert message.endswith("engine glm not restarted: a rule restarted it at 2026-03-01 12:02:00 UTC, "
                            "within the 15 min cool-down")
    assert generation() == 1 and queued_control_tasks(engine) == 1
    clock.run(60, memory(50))
    clock.skip(15 * 60)
    clock.run(120, memory(97))  # past the cool-down: restarted again
    assert generation() == 2 and queued_control_tasks(engine) == 2
    last = RuleRestart.objects.get(engine=engine)
    assert f"engine glm restarted at {last.restarted_at:%Y-%m-%d %H:%M:%S} UTC" in open_incident("gpu-memory").message
    assert last.restarted_at.strftime("%H:%M:%S") == "12:23:30" and last.reason.startswith("GPU 0 memory above 95 %")


def test_the_cool_down_is_shared_by_the_rules(clock, engine):
    def stuck_and_full():
        return cycle(gpus=[gpu(0, memory=97, processes=own(97))], engines=[reading(engine, requests_waiting=3.0,
                                                                generation_tokens_per_s=0.0)])

    clock.run(120, stuck_and_full)
    stuck, full = open_incident("stuck"), open_incident("gpu-memory")
    assert "engine glm restarted at 2026-03-01 12:01:00 UTC" in stuck.message  # stuck is raised after 60 s
    assert "a rule restarted it at 2026-03-01 12:01:00 UTC" in full.message
    assert generation() == 1 and queued_control_tasks(engine) == 1


def test_the_cool_down_is_editable(clock, engine, rule_settings):
    rule_settings.restart_cooldown_minutes = 2
    rule_settings.save()
    clock.run(120, memory(97))
    clock.run(60, memory(50))
    clock.run(120, memory(97))  # 3 minutes later: past a 2-minute cool-down
    assert generation() == 2


def test_an_engine_that_is_not_ready_is_left_to_the_supervisor(clock, engine):
    Engine.objects.filter(pk=engine.pk).update(state=EngineState.DRAINING)
    clock.run(120, memory(97))
    assert open_incident("gpu-memory").message.endswith("engine glm not restarted: it is draining already")
    assert generation() == 0 and queued_control_tasks(engine) == 0
    assert not RuleRestart.objects.exists()
