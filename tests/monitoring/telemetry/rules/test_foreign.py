"""A process outside the engines holding more than 2 GiB on an engine's GPU: a warning naming it."""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, gpu, incidents, open_incident, proc, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0,1")


def on_gpu(index, *processes, engine=None):
    own = [proc(100, 20, "VLLM::EngineCore", engine_id=engine.pk)] if engine else []
    return lambda: cycle(gpus=[gpu(index, memory=90, processes=[*own, *processes])])


def test_a_stray_jupyter_is_named_after_its_duration(clock, engine):
    clock.run(20, on_gpu(1, proc(4242, 5.2, "jupyter-kernel"), engine=engine))
    assert open_incident("foreign") is None
    clock.step(on_gpu(1, proc(4242, 5.2, "jupyter-kernel"), engine=engine))
    incident = open_incident("foreign")
    assert (incident.level, incident.kind) == (Level.YELLOW, Incident.Kind.GPU)
    assert incident.title == "Foreign process 4242 on GPU 1 of engine glm"
    assert incident.message == "pid 4242 (jupyter-kernel) holds 5.2 GiB on GPU 1, which engine glm uses for 30 s"
    assert incident.value == pytest.approx(5.2, abs=0.01)


def test_small_processes_engine_processes_and_other_gpus_are_left_alone(clock, engine):
    clock.run(300, on_gpu(0, proc(7, 1.5, "nvtop"), engine=engine))  # under 2 GiB
    clock.run(300, on_gpu(0, proc(8, None, "unknown")))  # NVML could not say how much
    clock.run(300, on_gpu(5, proc(9, 12.0, "training")))  # GPU 5 belongs to no engine
    assert not Incident.objects.exists()


def test_each_process_is_its_own_incident_and_resolves_when_it_exits(clock, engine):
    clock.run(30, on_gpu(0, proc(11, 3, "a"), proc(12, 4, "b"), engine=engine))
    assert incidents("foreign").filter(resolved_at__isnull=True).count() == 2
    clock.run(50, on_gpu(0, proc(12, 4, "b"), engine=engine))
    clock.step(on_gpu(0, proc(12, 4, "b"), engine=engine))  # pid 11 gone for the clear duration
    assert [i.title for i in incidents("foreign").filter(resolved_at__isnull=True)] == [
        "Foreign process 12 on GPU 0 of engine glm"]


def test_the_size_limit_is_editable(clock, engine, rule_settings):
    rule_settings.foreign_gib = 1
    rule_settings.save()
    clock.run(30, on_gpu(0, proc(7, 1.5, "nvtop"), engine=engine))
    assert "pid 7 (nvtop) holds 1.5 GiB" in open_incident("foreign").message
