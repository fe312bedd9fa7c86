"""Silence is raised, never taken for an all-clear: the sampler, an engine's /metrics, NVML."""

import pytest
from django_celery_beat.models import PeriodicTask

from alerts.levels import Level
from alerts.models import Incident
from glmadmin.celery import app
from monitoring.tasks import watch_telemetry_flow
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, gpu, open_incident, reading, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module
TASK = "monitoring.tasks.watch_telemetry_flow"


def no_data() -> Incident | None:
    return Incident.objects.open().filter(source="telemetry:no-data:local").first()


def watch() -> str:
    return watch_telemetry_flow.apply().get()


def test_the_watchdog_is_scheduled_and_expires_before_its_next_run(db):
    task = PeriodicTask.objects.get(task=TASK)
    assert task.interval.every == 30 and 0 < task.expire_seconds < task.interval.every
    app.loader.import_default_modules()  # what a worker does at start: the task must be found
    assert TASK in app.tasks


def test_a_stopped_sampler_raises_no_data_and_its_return_resolves_it(clock):
    clock.run(60, lambda: cycle())
    assert watch() == "no change" and no_data() is None
    clock.skip(30)  # three intervals of silence: still within the default 3 x 10 s
    assert watch() == "no change"
    clock.skip(1)
    assert watch() == "no-data incident opened on local"
    incident = no_data()
    assert (incident.level, incident.kind, incident.title) == (Level.ORANGE, Incident.Kind.TELEMETRY,
                                                               "Telemetry: no data from local")
    assert incident.message.startswith(
        "no telemetry sample from host local has reached the rules for 31 s (one is expected every 10 s): its "
        "worker (queue engines.local) or beat is down")
    clock.skip(300)
    assert watch() == "no change"  # one incident for the whole outage
    clock.step(lambda: cycle())
    assert watch() == "no-data incident resolved on local"
    assert no_data() is None and Incident.objects.count() == 1


def test_a_sampler_that_never_ran_is_no_data_too(clock):
    assert watch() == "no change"  # the first check starts the clock rather than crying wolf at install
    clock.skip(31)
    assert watch() == "no-data incident opened on local"


def test_the_limit_follows_the_rule_and_the_sampling_interval(clock, rule_settings):
    from monitoring.models import TelemetrySettings

    rule_settings.no_data_intervals = 5
    rule_settings.save()
    TelemetrySettings.objects.filter(pk=1).update(sample_interval_seconds=20)
    clock.run(10, lambda: cycle())
    clock.skip(100)
    assert watch() == "no change"
    clock.skip(1)
    assert watch() == "no-data incident opened on local"
    rule_settings.no_data_enabled = False
    rule_settings.save()
    assert watch() == "no-data incident resolved on local"
    clock.skip(600)
    assert watch() == "no change" and no_data() is None


def test_ready_engine_without_metrics_for_three_cycles(clock):
    engine = ready_engine("glm", gpu_ids="")
    broken = lambda: cycle(engines=[reading(engine, kv_cache_usage=None, ttft_p95=None,  # noqa: E731
                                            metrics_error="connection refused")])
    clock.run(10, broken)
    assert open_incident("metrics") is None
    clock.step(broken)
    incident = open_incident("metrics")
    assert (incident.level, incident.title) == (Level.YELLOW, "No metrics from engine glm")
    assert incident.message == "engine glm is ready but its /metrics gave nothing: connection refused"
    clock.run(60, lambda: cycle(engines=[reading(engine)]))
    assert open_incident("metrics") is None


def test_engines_that_are_not_ready_may_lack_metrics(clock):
    engine = ready_engine("glm", gpu_ids="")
    engine.state = "starting"
    engine.save()
    clock.run(300, lambda: cycle(engines=[reading(engine, metrics_error="connection refused")]))
    assert not Incident.objects.exists()


def test_failing_nvml_on_a_gpu_machine(clock):
    failing = lambda: cycle(gpu_status="NVML_ERROR_UNKNOWN: Unknown Error")  # noqa: E731
    clock.run(10, failing)
    assert open_incident("nvml") is None
    clock.step(failing)
    incident = open_incident("nvml")
    assert (incident.level, incident.kind) == (Level.ORANGE, Incident.Kind.GPU)
    assert incident.message == "NVML fails on local: NVML_ERROR_UNKNOWN: Unknown Error; GPU rules are blind"
    clock.run(60, lambda: cycle(gpus=[gpu(0)]))
    assert open_incident("nvml") is None


def test_failing_nvml_keeps_gpu_incidents_open(clock):
    ready_engine("glm", gpu_ids="0")
    clock.run(120, lambda: cycle(gpus=[gpu(0, memory=97)]))
    assert open_incident("gpu-memory")
    clock.run(600, lambda: cycle(gpu_status="NVML_ERROR_GPU_IS_LOST"))
    assert open_incident("gpu-memory"), "blind is not an all-clear"


def test_a_machine_without_gpus_raises_nothing(clock):
    engine = ready_engine("cpu", gpu_ids="")
    clock.run(1800, lambda: cycle(gpu_status="no GPU", engines=[reading(engine)]))
    assert watch() == "no change"
    assert not Incident.objects.exists()


@pytest.mark.parametrize("status", ["", "no GPU"])
def test_nvml_incident_clears_when_nvml_answers_or_reports_no_gpu(clock, status):
    clock.run(20, lambda: cycle(gpu_status="NVML_ERROR_DRIVER_NOT_LOADED"))
    assert open_incident("nvml")
    clock.run(70, lambda: cycle(gpu_status=status))
    assert open_incident("nvml") is None
