"""The rules behind the real sampling task: NVML faked (the hardware), everything else real.

An engine process tree holds GPU 0 (97 % full) beside a stray process, and its real /metrics server
says requests wait while no token comes out. Cycles run as the beat task runs them, every 10 s.
"""

import pytest

from alerts.models import Incident
from inference.models import Engine, EngineState
from monitoring import tasks
from monitoring.tasks import watch_telemetry_flow
from tests.support import fake_nvml
from tests.support import telemetry_rules as support
from tests.support.telemetry import MetricsServer, ProcessTree, invisible_pid
from tests.support.telemetry_rules import GIB, INTERVAL, open_incident, queued_control_tasks

clock = support.clock  # a fixture of this module


def stuck_metrics() -> str:
    # The engine core hangs: 3 requests wait, the generated-token counter no longer moves.
    return "\n".join([
        "# TYPE vllm:kv_cache_usage_perc gauge",
        'vllm:kv_cache_usage_perc{engine="0",model_name="glm"} 0.4',
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0",model_name="glm"} 0',
        "# TYPE vllm:num_requests_waiting gauge",
        'vllm:num_requests_waiting{engine="0",model_name="glm"} 3',
        "# TYPE vllm:generation_tokens counter",
        'vllm:generation_tokens_total{engine="0",model_name="glm"} 5000',
    ]) + "\n"


@pytest.fixture
def scene(clock, monkeypatch):
    tree, server = ProcessTree(), MetricsServer(stuck_metrics())
    stray = invisible_pid()
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(
        0, used=int(23.3 * GIB), total=24 * GIB, util=0, processes=[(tree.child, 20 * GIB), (stray, 3 * GIB)])]))
    engine = Engine.objects.create(name="glm", port=server.port, model="/m", served_model_name="glm", gpu_ids="0",
                                   state=EngineState.READY, pid=tree.leader.pid,
                                   process_started_at=tree.create_time)
    yield engine, stray
    server.close()
    tree.kill()


def test_the_sampling_task_drives_the_rules(clock, scene):
    engine, stray = scene
    for _ in range(13):  # two minutes of cycles, the first at 0 s
        assert tasks.sample_telemetry().startswith("sampled 1 GPU(s), 1 engine(s)")
        clock.skip(INTERVAL)
    # The first scrape has no window yet, so "stuck" counts from the second cycle: raised at 70 s.
    stuck = open_incident("stuck")
    assert "3 request(s) waiting" in stuck.message and "engine glm restarted at 2026-03-01 12:01:10 UTC" in \
        stuck.message
    assert f"pid {stray} (" in open_incident("foreign").message
    # The stray process, not the engine (20 of 24 GiB, within its 90 % reservation), fills GPU 0.
    assert open_incident("gpu-memory").message.endswith(
        f"engine glm not restarted: foreign pid {stray} (?) holds 3.0 GiB on GPU 0")
    assert Engine.objects.get().restart_generation == 1 and queued_control_tasks(engine) == 1
    clock.skip(2 * INTERVAL)  # the sampler stops: 31 s since the last cycle
    clock.skip(1)
    assert watch_telemetry_flow.apply().get() == "no-data incident opened on local"
    assert Incident.objects.open().count() == 4
