"""Telemetry on several hosts: each host samples itself in its own queue, and nothing of two hosts mixes.

A second host is the same code with another GLMADMIN_HOST_NAME: here in this process (the `settings`
fixture) with its own fake NVML, and once as a real Celery worker started as the README says.
"""

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import Client
from django_celery_beat.models import PeriodicTask

from alerts.models import Incident
from glmadmin.celery import app
from inference.models import Engine
from monitoring import tasks
from monitoring.models import GpuSample, HostSample, Resolution, TelemetrySettings
from monitoring.tasks import watch_telemetry_flow
from monitoring.telemetry import charts, latest, sampler, store
from monitoring.telemetry.rules import evaluate as rules
from tests.support import fake_nvml
from tests.support import telemetry_rules as support
from tests.support.processes import ROOT, subprocess_env
from tests.support.telemetry import samples
from tests.support.telemetry_rules import INTERVAL, proc, ready_engine

clock = support.clock  # a fixture of this module


def sample_as(settings, monkeypatch, host: str, *gpus) -> str:
    """One cycle taken by `host`'s worker, whose NVML shows `gpus`."""
    settings.GLMADMIN_HOST_NAME = host
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(list(gpus)))
    return tasks.sample_telemetry(host=host)


@pytest.fixture
def quiet_rules(monkeypatch):
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)


@pytest.mark.django_db
def test_a_worker_brings_its_hosts_sampling_schedule_in_its_own_queue(settings):
    settings.GLMADMIN_HOST_NAME = "gpu2"
    tasks._sample_this_host()  # what the worker_ready signal runs
    tasks._sample_this_host()
    task = PeriodicTask.objects.get(task="monitoring.tasks.sample_telemetry", queue="engines.gpu2")
    assert (task.name, json.loads(task.kwargs), task.interval.every, task.expire_seconds) == (
        "Sample telemetry on gpu2", {"host": "gpu2"}, 10, 9)
    config = TelemetrySettings.load()
    config.sample_interval_seconds = 20
    config.save()  # the interval applies to every host's schedule
    assert sorted(PeriodicTask.objects.filter(task="monitoring.tasks.sample_telemetry").values_list(
        "name", "interval__every", "expire_seconds")) == [
        ("Sample telemetry on gpu2", 20, 19), ("Sample telemetry on local", 20, 19)]


@pytest.mark.django_db
def test_a_task_meant_for_another_host_samples_nothing(settings, monkeypatch, quiet_rules):
    settings.GLMADMIN_HOST_NAME = "local"
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0)]))
    assert tasks.sample_telemetry(host="gpu2") == "skipped: this worker is on host local, not gpu2"
    assert not HostSample.objects.exists() and latest.load_all() == {}


@pytest.mark.django_db
def test_two_hosts_gpu_0_stay_two_series_everywhere(settings, monkeypatch, quiet_rules, admin_client, time_machine):
    now = support.START
    for i in range(6):  # a minute of cycles of both hosts
        time_machine.move_to(now + timedelta(seconds=10 * i), tick=False)
        sample_as(settings, monkeypatch, "local", fake_nvml.gpu(0, util=10, name="NVIDIA H100 80GB HBM3"))
        sample_as(settings, monkeypatch, "gpu2", fake_nvml.gpu(0, util=90, name="NVIDIA GeForce RTX 4090 D"))
    raw = GpuSample.objects.filter(resolution=Resolution.RAW)
    assert sorted(raw.values_list("host", "utilization").distinct()) == [("gpu2", 90), ("local", 10)]
    assert sorted(HostSample.objects.values_list("host", flat=True).distinct()) == ["gpu2", "local"]
    store.downsample(now + timedelta(minutes=2))
    assert sorted(GpuSample.objects.filter(resolution=Resolution.MINUTE).values_list("host", "index", "utilization")
                  ) == [("gpu2", 0, 90), ("local", 0, 10)]
    assert set(latest.load_all()) == {"gpu2", "local"}
    # The dashboard: one group of cards per host, each with its own GPU 0.
    page = admin_client.get("/").content.decode()
    gpu2 = page[page.index('data-host="gpu2"'):page.index('data-host="local"')]
    assert "<h3>gpu2" in gpu2 and 'data-gpu="0"' in gpu2 and "RTX 4090 D" in gpu2 and "90 %" in gpu2
    local = page[page.index('data-host="local"'):page.index('id="engine-metrics"')]
    assert "H100" in local and "10 %" in local and "RTX" not in local
    labels = {line["label"] for chart in charts.build("hour", now + timedelta(minutes=1))
              if chart["key"] == "gpu_util" for line in chart["lines"]}
    assert labels == {"gpu2 GPU 0", "local GPU 0"}
    # /metrics: the same GPU index twice, told apart by host.
    values = samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())
    util = {labels: v for (name, labels), v in values.items() if name == "glmadmin_gpu_utilization_percent"}
    assert {dict(labels)["host"]: v for labels, v in util.items()} == {"gpu2": 90, "local": 10}
    assert {dict(k[1])["host"] for k in values if k[0] == "glmadmin_host_memory_total_bytes"} == {"gpu2", "local"}


@pytest.mark.django_db
def test_one_host_shows_no_host_headings(settings, monkeypatch, quiet_rules, admin_client):
    sample_as(settings, monkeypatch, "local", fake_nvml.gpu(0))
    page = admin_client.get("/").content.decode()
    assert 'data-host="local"' in page and "<h3>local" not in page and "<th>Host</th>" not in page


def test_the_rules_of_each_host_judge_its_own_gpus_and_engines(clock, settings, monkeypatch):
    local = ready_engine("glm", gpu_ids="0", port=8160)
    remote = ready_engine("glm-b", gpu_ids="0", port=8161)
    Engine.objects.filter(pk=remote.pk).update(host="gpu2")

    for _ in range(13):  # two minutes of cycles; on gpu2 the engine has grown past its reservation
        for host, engine, percent in (("local", local, 50), ("gpu2", remote, 97)):
            settings.GLMADMIN_HOST_NAME = host
            # NVML's view with the processes attributed (the attribution itself: test_telemetry_nvml.py).
            gpu = support.gpu(0, memory=percent, processes=[proc(1000 + engine.pk, 23.2, "VLLM::EngineCore",
                                                                   engine_id=engine.pk)])
            monkeypatch.setattr(sampler, "read_gpus", lambda table, gpu=gpu: ((gpu,), ""))
            tasks.sample_telemetry(host=host)
        clock.skip(INTERVAL)
    incident = Incident.objects.open().get()
    assert incident.source == "telemetry:gpu2:gpu0:gpu-memory"
    assert incident.message.startswith("GPU 0 (engine glm-b) memory at 97.0 %")
    assert "engine glm-b restarted" in incident.message
    assert Engine.objects.get(pk=remote.pk).restart_generation == 1
    assert Engine.objects.get(pk=local.pk).restart_generation == 0


def test_the_watchdog_names_the_host_that_went_silent(clock, settings, monkeypatch):
    from monitoring.telemetry.schedule import ensure_host_schedule

    ensure_host_schedule("gpu2")  # its worker started once: gpu2 is expected to sample from now on
    for _ in range(3):
        for host in ("local", "gpu2"):
            settings.GLMADMIN_HOST_NAME = host
            fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded()))
            tasks.sample_telemetry(host=host)
        clock.skip(INTERVAL)
    assert watch_telemetry_flow.apply().get() == "no change"
    for _ in range(4):  # gpu2's worker is gone; local goes on
        settings.GLMADMIN_HOST_NAME = "local"
        tasks.sample_telemetry(host="local")
        clock.skip(INTERVAL)
    assert watch_telemetry_flow.apply().get() == "no-data incident opened on gpu2"
    incident = Incident.objects.open().get()
    assert (incident.source, incident.title) == ("telemetry:no-data:gpu2", "Telemetry: no data from gpu2")
    assert incident.message.startswith("no telemetry sample from host gpu2 has reached the rules for 50 s")
    assert 'delete the periodic task "Sample telemetry on gpu2"' in incident.message
    # The operator retires gpu2: no schedule and no engine there, so nothing is expected of it any more.
    PeriodicTask.objects.filter(name="Sample telemetry on gpu2").delete()
    assert watch_telemetry_flow.apply().get() == "no-data incident resolved on gpu2"
    assert not Incident.objects.open().exists()


@pytest.mark.django_db(transaction=True)
def test_a_second_hosts_worker_started_as_the_readme_says_samples_itself():
    env = dict(subprocess_env(), GLMADMIN_HOST_NAME="gpu2", GLMADMIN_LOG_LEVEL="WARNING")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "glmadmin", "worker", "-Q", "engines.gpu2",
                               "--pool", "solo", "--loglevel", "WARNING"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not PeriodicTask.objects.filter(name="Sample telemetry on gpu2").exists():
            assert worker.poll() is None and time.monotonic() < deadline, worker.stdout.read() if worker.poll() \
                is not None else "the worker created no schedule within 120 s"
            time.sleep(0.2)
        task = PeriodicTask.objects.get(name="Sample telemetry on gpu2")
        # What beat sends for that schedule: the task, its kwargs, its queue.
        app.send_task(task.task, kwargs=json.loads(task.kwargs), queue=task.queue)
        while not HostSample.objects.filter(host="gpu2").exists():
            assert time.monotonic() < deadline, "gpu2's worker sampled nothing within 120 s"
            time.sleep(0.2)
        assert latest.load("gpu2").gpu_status == "no GPU"  # this machine has no NVIDIA driver
    finally:
        worker.terminate()
        worker.wait(timeout=30)
