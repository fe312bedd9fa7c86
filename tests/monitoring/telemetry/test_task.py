"""The sampling task: a cycle is stored, remembered and handed to the rules; overlapping runs skip."""

import logging

import pytest

from glmadmin.lib.redis import single_flight
from monitoring import tasks
from monitoring.models import EngineSample, GpuSample, HostSample
from monitoring.telemetry import latest
from monitoring.telemetry.rules import evaluate as rules
from tests.support import fake_nvml

pytestmark = pytest.mark.django_db


@pytest.fixture
def gpus(monkeypatch):
    return fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0), fake_nvml.gpu(1, util=99)]))


@pytest.fixture
def seen(monkeypatch):
    cycles = []
    monkeypatch.setattr(rules, "evaluate", cycles.append)
    return cycles


def test_a_cycle_is_stored_remembered_and_evaluated(gpus, seen):
    assert tasks.sample_telemetry() == "sampled 2 GPU(s), 0 engine(s)"
    assert GpuSample.objects.count() == 2 and HostSample.objects.count() == 1 and not EngineSample.objects.exists()
    (cycle,) = seen
    assert [g.utilization for g in cycle.gpus] == [37, 99]
    assert latest.load("local") == cycle and latest.load_all() == {"local": cycle}  # what the pages read


def test_a_failing_rule_loses_no_sample(gpus, monkeypatch, caplog):
    def broken(cycle):
        raise ZeroDivisionError("a rule divided by zero")

    monkeypatch.setattr(rules, "evaluate", broken)
    with caplog.at_level(logging.ERROR):
        tasks.sample_telemetry()
        tasks.sample_telemetry()
    assert HostSample.objects.count() == 2
    assert "telemetry rules failed" in caplog.text and "ZeroDivisionError" in caplog.text


def test_an_overlapping_run_skips(gpus, seen):
    with single_flight("sample-telemetry:local", ttl_seconds=60) as acquired:
        assert acquired
        assert tasks.sample_telemetry() == "skipped: the previous cycle is still running"
    assert not HostSample.objects.exists() and seen == []
    assert tasks.sample_telemetry().startswith("sampled")


def test_a_machine_without_gpu_samples_the_rest(monkeypatch, seen):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded()))
    tasks.sample_telemetry()
    (cycle,) = seen
    assert cycle.gpus == () and cycle.gpu_status == "no GPU"
    assert HostSample.objects.count() == 1 and cycle.host.memory_total > 0


def test_an_nvml_error_is_reported_in_the_cycle(gpus, seen):
    gpus.failing["nvmlDeviceGetCount"] = fake_nvml.NVMLError_GpuIsLost("GPU is lost")
    tasks.sample_telemetry()
    assert seen[0].gpu_status == "NVML error: GPU is lost"
    assert not GpuSample.objects.exists() and HostSample.objects.count() == 1


def test_downsampling_task_runs_and_skips_when_busy():
    assert "minute average(s) written" in tasks.downsample_telemetry()
    with single_flight("downsample-telemetry", ttl_seconds=60):
        assert tasks.downsample_telemetry() == "skipped: another run is in progress"
