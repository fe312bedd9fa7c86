"""Whose memory fills the GPU decides the restart: only an engine grown past what it reserved is restarted.

The incident is raised whoever fills the GPU. A restart is withheld, with the reason in the incident,
when a foreign process holds the memory (the new start would fail vLLM's free-memory check, and three
failed starts leave the engine failed) or when the engine holds no more than vLLM reserved for it
(gpu_memory_utilization, 0.9 by default: it would reserve the same again, every cool-down).
"""

import pytest

from inference.models import Engine
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, gpu, open_incident, proc, queued_control_tasks, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0")


def full(engine, engine_gib, *others, percent=97.0):
    """GPU 0 (24 GiB) `percent` full; the engine's EngineCore holds `engine_gib` of it."""
    own = [] if engine_gib is False else [proc(100, engine_gib, "VLLM::EngineCore", engine_id=engine.pk)]
    return lambda: cycle(gpus=[gpu(0, memory=percent, processes=[*own, *others])])


def generation() -> int:
    return Engine.objects.get().restart_generation


def test_a_foreign_process_filling_the_gpu_is_raised_but_the_engine_is_not_restarted(clock, engine):
    clock.run(120, full(engine, 19.7, proc(1129, 3.6, "python3")))
    incident = open_incident("gpu-memory")
    assert incident.message == ("GPU 0 (engine glm) memory at 97.0 % (23.3 of 24.0 GiB) for 2 min; engine glm "
                                "not restarted: foreign pid 1129 (python3) holds 3.6 GiB on GPU 0")
    assert generation() == 0 and queued_control_tasks(engine) == 0
    clock.run(3600, full(engine, 19.7, proc(1129, 3.6, "python3")))  # hours of it: still no restart
    assert generation() == 0


def test_even_an_engine_past_its_reservation_is_not_restarted_beside_a_foreign_process(clock, engine):
    # Growth is there (22.5 GiB > 92 % of 24), but the new start would find 3 GiB taken by someone else.
    clock.run(120, full(engine, 22.5, proc(4242, 3.0, "jupyter"), percent=99.9))
    assert open_incident("gpu-memory").message.endswith("not restarted: foreign pid 4242 (jupyter) holds 3.0 GiB "
                                                        "on GPU 0")
    assert generation() == 0


def test_a_healthy_engine_reserving_95_percent_is_never_restarted(clock, engine):
    Engine.objects.filter(pk=engine.pk).update(gpu_memory_utilization=0.95)
    clock.run(120, full(engine, 22.8, percent=96))  # 95 % of 24 GiB, plus the driver's own share
    assert open_incident("gpu-memory").message.endswith(
        "engine glm not restarted: it holds what it reserved (22.8 GiB; 95 % by gpu_memory_utilization)")
    clock.run(3 * 3600, full(engine, 22.8, percent=96))  # twelve cool-downs: not one restart
    assert generation() == 0 and queued_control_tasks(engine) == 0


def test_vllms_default_reservation_counts_when_the_engine_sets_none(clock, engine):
    # 21.6 GiB = 0.9 x 24, and small processes of others (under the 2 GiB foreign limit) fill the rest.
    clock.run(120, full(engine, 21.6, proc(7, 1.5, "nvtop"), proc(8, 0.2, "Xorg"), percent=97))
    assert open_incident("gpu-memory").message.endswith(
        "engine glm not restarted: it holds what it reserved (21.6 GiB; 90 % vLLM's default gpu_memory_utilization)")
    assert generation() == 0


def test_an_engine_grown_past_its_reservation_and_margin_is_restarted(clock, engine):
    clock.run(120, full(engine, 22.2, proc(7, 1.0, "nvtop")))  # 92.5 % of the GPU: past 90 % + 2 points
    assert open_incident("gpu-memory").message.endswith("engine glm restarted at 2026-03-01 12:02:00 UTC")
    assert generation() == 1 and queued_control_tasks(engine) == 1


def test_what_nvml_cannot_tell_is_no_reason_to_restart(clock, engine):
    clock.run(120, full(engine, None))  # NVML in a container: no per-process memory
    assert open_incident("gpu-memory").message.endswith(
        "engine glm not restarted: NVML does not say how much its processes hold on GPU 0")
    Engine.objects.filter(pk=engine.pk).update(restart_generation=0)
    clock.run(60, full(engine, 2.0, percent=50))
    clock.run(120, full(engine, False, proc(9, 1.0, "python3")))
    assert open_incident("gpu-memory").message.endswith(
        "engine glm not restarted: none of its processes holds memory on GPU 0")
    assert generation() == 0


def test_a_withheld_restart_comes_once_it_would_help(clock, engine):
    clock.run(120, full(engine, 19.7, proc(1129, 3.6, "python3")))
    assert "not restarted: foreign pid 1129" in open_incident("gpu-memory").message
    # The stray process exits and the engine grows into the space it left: now a restart cures it.
    changes = clock.step(full(engine, 23.2))
    assert changes == [] and generation() == 1 and queued_control_tasks(engine) == 1
    incident = open_incident("gpu-memory")
    assert incident.message.endswith("holds 3.6 GiB on GPU 0; later engine glm restarted at 2026-03-01 12:02:10 UTC")
    clock.run(300, full(engine, 23.2))  # once per incident, and the cool-down still holds
    assert generation() == 1
