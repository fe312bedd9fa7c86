"""Prometheus /metrics: the platform's view plus every registered collector, behind a token or loopback."""

import httpx
import pytest
from django.test import Client
from prometheus_client.core import GaugeMetricFamily

from glmadmin import exporter
from monitoring import tasks
from monitoring.disk_check import check_all, simulate
from monitoring.telemetry.rules import evaluate as rules
from tests.support import fake_nvml
from tests.support.telemetry import samples

pytestmark = pytest.mark.django_db


class GatewayCollector:
    def collect(self):
        family = GaugeMetricFamily("glmadmin_gateway_requests_in_flight", "test collector")
        family.add_metric([], 3)
        yield family


class BrokenCollector:
    def collect(self):
        raise RuntimeError("collector bug")


@pytest.fixture
def sampled(monkeypatch):
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, used=2**30, processes=[(424242, 2**30)])]))
    tasks.sample_telemetry()


def test_loopback_without_token_sees_everything(sampled, monkeypatch):
    monkeypatch.setattr(exporter, "_collectors", [])
    exporter.register(BrokenCollector())
    exporter.register(GatewayCollector())
    simulate("orange")
    (disk,) = check_all()  # the migration watches /
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    values = samples(response.content.decode())
    gpu = (("gpu", "0"), ("host", "local"), ("name", "NVIDIA H100 80GB HBM3"), ("uuid", "GPU-fake-0"))
    assert values[("glmadmin_gpu_memory_used_bytes", gpu)] == 2**30
    assert values[("glmadmin_gpu_utilization_percent", gpu)] == 37
    assert values[("glmadmin_gpu_process_memory_bytes",
                   (("engine", "foreign"), ("gpu", "0"), ("host", "local"), ("name", "?"), ("pid", "424242")))] == 2**30
    assert values[("glmadmin_host_memory_total_bytes", (("host", "local"),))] > 0
    assert values[("glmadmin_incidents_open", (("level", "orange"),))] == 1
    assert values[("glmadmin_incidents_open", (("level", "red"),))] == 0
    assert values[("glmadmin_gateway_requests_in_flight", ())] == 3  # a collector another app registered
    assert values[("glmadmin_disk_usage_percent", (("label", "root"), ("path", "/")))] == disk.percent


def test_a_remote_client_without_token_is_refused(sampled):
    assert Client(REMOTE_ADDR="10.1.2.3").get("/metrics").status_code == 403
    # A proxy on this machine makes every client look local: a forwarded request is not trusted.
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403


def test_with_a_token_only_the_token_counts(sampled, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    remote = Client(REMOTE_ADDR="10.1.2.3")
    assert remote.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    refused = remote.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401  # loopback needs it too now


def test_no_gpu_is_a_value_not_a_failure(monkeypatch):
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=fake_nvml.NVMLError_LibraryNotFound()))
    tasks.sample_telemetry()
    values = samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())
    assert values[("glmadmin_gpu_nvml_ok", (("host", "local"), ("status", "no GPU")))] == 0


def test_over_real_http_from_loopback(server):
    response = httpx.get(f"{server}/metrics", timeout=10)
    assert response.status_code == 200 and "glmadmin_incidents_open" in response.text
