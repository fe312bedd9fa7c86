"""Each GPU's health state where operators look (issue 19): the dashboard's GPU cards, `manage.py gpu_status`
and /metrics (with the host label); a signal the GPU does not support is shown as "not supported"."""

import pytest
from django.core.management import call_command
from django.test import Client

from inference.models import Engine
from monitoring import tasks
from monitoring.telemetry import gpu_health
from monitoring.telemetry.rules import evaluate as rules
from tests.support import fake_nvml
from tests.support.telemetry import samples

pytestmark = pytest.mark.django_db


@pytest.fixture
def nvml(monkeypatch):
    monkeypatch.setattr(gpu_health, "_nvlink", {})
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)  # what is shown, not what the rules do
    return fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([
        fake_nvml.gpu(0, remap=[0, 1, 1, 0]), fake_nvml.gpu(1, pcie_width=4, nvlink=fake_nvml.nvlink(2)),
        fake_nvml.gpu(2)]))


def test_the_dashboard_cards_show_each_gpus_state_and_action(admin_client, nvml):
    tasks.sample_telemetry()
    page = admin_client.get("/").content.decode()
    cards = {index: page[page.index(f'data-gpu="{index}"'):] for index in (0, 1, 2)}
    assert 'data-health-state="failing"' in cards[0].split('data-gpu="1"')[0]
    assert "a row remap is pending" in cards[0] and "reset the GPU (nvidia-smi -r" in cards[0]
    assert 'data-health-state="degraded"' in cards[1].split('data-gpu="2"')[0]
    assert "PCIe link x4 of x16" in cards[1]
    assert 'data-health-state="ok"' in cards[2]
    assert "<dt>retired pages</dt><dd>not supported</dd>" in cards[2]  # an H100 remaps rows instead


def test_the_engine_panel_shows_the_health_of_the_engines_gpus(admin_client, nvml):
    Engine.objects.create(name="glm", port=8166, model="/m", served_model_name="glm", gpu_ids="0")
    Engine.objects.create(name="other", port=8167, model="/m", served_model_name="other", gpu_ids="2")
    tasks.sample_telemetry()
    page = admin_client.get("/").content.decode()
    glm = page[page.index('data-engine="glm"'):page.index('data-engine="other"')]
    assert 'data-engine-gpu-health="0"' in glm and "GPU 0 failing" in glm
    assert "a row remap is pending" in glm and "reset the GPU" in glm
    other = page[page.index('data-engine="other"'):]
    assert "data-engine-gpu-health" not in other.split("</section>")[0]  # its GPU 2 is fine


def test_a_gpu_that_stopped_answering_is_named_while_the_cards_cannot_be_drawn(admin_client, nvml):
    nvml.gpus[2]["lost"] = True  # NVML's whole reading fails: no cards, but which GPU is known
    tasks.sample_telemetry()
    page = admin_client.get("/").content.decode()
    assert "data-gpu-error" in page
    lost = page[page.index('data-gpu-health="2"'):]
    assert 'data-health-state="failing"' in lost and "NVML does not answer for this GPU" in lost


def test_gpu_status_lists_state_findings_and_every_signal(nvml, capsys):
    call_command("gpu_status")
    out = capsys.readouterr().out.splitlines()
    assert "0    failing   a row remap is pending (applied at the next GPU reset) -> reset the GPU " \
           "(nvidia-smi -r with no process on it) or reboot the host" in out
    assert any(line.startswith("1    degraded  PCIe link x4 of x16 -> reseat the GPU") for line in out)
    assert "2    ok       " in out
    signals = next(line for line in out if line.startswith("GPU 2 signals:"))
    assert "retired pages not supported" in signals and "NVLink not supported" in signals
    assert "ECC uncorrected 0" in signals  # supported and zero is a zero
    assert "NVLink 2 link(s), errors recovery 0 replay 0" in \
        next(line for line in out if line.startswith("GPU 1 signals:"))


def test_metrics_carry_each_gpus_state_with_the_host(nvml):
    tasks.sample_telemetry()
    values = samples(Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode())

    def state(gpu, name):
        return values[("glmadmin_gpu_health_state", (("gpu", gpu), ("host", "local"), ("state", name)))]

    assert (state("0", "failing"), state("0", "ok"), state("1", "degraded"), state("2", "ok")) == (1, 0, 1, 1)
    assert values[("glmadmin_gpu_health_finding",
                   (("gpu", "0"), ("host", "local"), ("signal", "remap"), ("state", "failing")))] == 1
    assert not [key for key in values if key[0] == "glmadmin_gpu_health_finding" and ("gpu", "2") in key[1]]
