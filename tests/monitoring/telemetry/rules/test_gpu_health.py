"""GPU health (issue 19): each NVML signal, injected into the fake NVML, raises its incident (kind GPU, orange
when the GPU is failing, yellow when degraded) with the recommended action, through the real sampling task;
a failing GPU's engine is drained and stopped (never the GPU reset), an application fault restarts it."""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from inference.models import Engine
from monitoring import tasks
from monitoring.models import TelemetryRules
from monitoring.telemetry import gpu_health, latest, xid_listener
from tests.support import fake_nvml
from tests.support import telemetry_rules as support
from tests.support.processes import wait_for
from tests.support.telemetry_rules import INTERVAL, open_incident, queued_control_tasks, ready_engine

clock = support.clock  # a fixture of this module


@pytest.fixture(autouse=True)
def _fresh_links(monkeypatch):
    monkeypatch.setattr(gpu_health, "_nvlink", {})


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0")


def install(monkeypatch, util=37, **health) -> fake_nvml.FakeNvml:
    """GPU 0 (the engine's) with the given signals beside a healthy GPU 1."""
    return fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, util=util, **health),
                                                              fake_nvml.gpu(1)]))


def sample(clock, cycles=1):
    for _ in range(cycles):
        assert tasks.sample_telemetry().startswith("sampled")
        clock.skip(INTERVAL)


def health_of(index: int):
    return next(h for h in latest.load("local").gpu_health if h.index == index)


FAILING = [  # signals, detail in the message, action in the message
    pytest.param({"ecc_uncorrected": 3}, "3 uncorrectable ECC error(s)", "reset the GPU", id="ecc"),
    pytest.param({"remap": [0, 2, 1, 0]}, "a row remap is pending", "reset the GPU", id="remap-pending"),
    pytest.param({"remap": [0, 2, 0, 1]}, "row remapping failed", "replace the GPU", id="remap-failure"),
    pytest.param({"retired": [[1] * 50, [2] * 10], "retired_pending": 0}, "60 retired memory pages",
                 "replace the GPU", id="retired-pages"),
    pytest.param({"retired": [[1], []], "retired_pending": 1}, "a page retirement is pending", "reset the GPU",
                 id="retirement-pending"),
]


@pytest.mark.parametrize(("signals", "detail", "action"), FAILING)
def test_a_failing_gpu_is_orange_with_its_action_and_its_engine_is_drained_and_stopped(
        clock, engine, monkeypatch, signals, detail, action):
    install(monkeypatch, **signals)
    sample(clock)
    incident = open_incident(r"gpu-failing:\w+")
    assert (incident.level, incident.kind) == (Level.ORANGE, Incident.Kind.GPU)
    assert detail in incident.message and f"Action: {action}" in incident.message
    assert incident.message.endswith("engine glm drained and stopped (the gateway no longer routes to it); "
                                     "start it again once the GPU is fixed")
    # The inference control path: disabled (the supervisor drains it, the gateway stops routing), host kicked.
    assert not Engine.objects.get().enabled and queued_control_tasks(engine) == 1
    assert Engine.objects.get().restart_generation == 0  # not restarted onto the same GPU
    assert health_of(0).state == "failing" and health_of(1).state == "ok"
    assert Incident.objects.filter(source__contains=":gpu1:").count() == 0


@pytest.mark.parametrize(("signals", "detail"), [
    pytest.param({"clocks": 0x40}, "clocks lowered: hw thermal slowdown", id="thermal"),
    pytest.param({"clocks": 0x80}, "clocks lowered: hw power brake", id="power-brake"),
    pytest.param({"clocks": 0x08}, "clocks lowered: hw slowdown", id="hw-slowdown"),
])
def test_hardware_slowdown_is_yellow_after_its_duration_and_leaves_the_engine_alone(
        clock, engine, monkeypatch, signals, detail):
    install(monkeypatch, **signals)
    sample(clock, 6)  # 50 s
    assert open_incident(r"gpu-degraded:clocks") is None
    sample(clock)  # 60 s: the rule's default duration
    incident = open_incident(r"gpu-degraded:clocks")
    assert (incident.level, incident.kind) == (Level.YELLOW, Incident.Kind.GPU)
    assert detail in incident.message and "Action: check the GPU's cooling and power delivery" in incident.message
    assert Engine.objects.get().enabled and queued_control_tasks(engine) == 0
    assert health_of(0).state == "degraded"


def test_a_pcie_link_below_its_width_is_yellow(clock, engine, monkeypatch):
    install(monkeypatch, pcie_width=8)
    sample(clock)
    incident = open_incident(r"gpu-degraded:pcie-width")
    assert incident.level == Level.YELLOW and "PCIe link x8 of x16" in incident.message
    assert "Action: reseat the GPU" in incident.message and Engine.objects.get().enabled


def test_a_pcie_generation_below_max_counts_only_on_a_busy_gpu(clock, engine, monkeypatch):
    fake = install(monkeypatch, util=3, pcie_gen=1)  # idle GPUs lower their link speed to save power
    sample(clock, 3)
    assert open_incident(r"gpu-degraded:pcie-gen") is None and health_of(0).state == "ok"
    fake.gpus[0]["util"] = 95
    sample(clock)
    assert "PCIe link at gen 1 of 5 while 95 % busy" in open_incident(r"gpu-degraded:pcie-gen").message


@pytest.mark.parametrize(("signal", "grow", "detail", "action"), [
    pytest.param("pcie-replay", lambda gpu: gpu.update(replays=gpu["replays"] + 50),
                 "PCIe replays rising: 300.0 per minute", "reseat the GPU", id="pcie-replays"),
    pytest.param("nvlink", lambda gpu: gpu["nvlink"][1]["errors"].update({1: gpu["nvlink"][1]["errors"][1] + 3}),
                 "NVLink errors rising: 18.0 per minute", "check the NVLink bridge", id="nvlink"),
])
def test_growing_link_error_counters_are_yellow(clock, engine, monkeypatch, signal, grow, detail, action):
    monkeypatch.setattr(gpu_health, "NVLINK_REFRESH", 0)  # NVLink read every cycle (else once a minute)
    fake = install(monkeypatch, replays=1000, nvlink=fake_nvml.nvlink(4, recovery=500))
    sample(clock, 3)  # counters high but still: old errors, nothing raised
    assert open_incident(rf"gpu-degraded:{signal}") is None
    grow(fake.gpus[0])
    sample(clock)
    incident = open_incident(rf"gpu-degraded:{signal}")
    assert incident.level == Level.YELLOW and detail in incident.message and f"Action: {action}" in incident.message


def test_nvlink_growth_holds_between_two_nvlink_readings(clock, engine, monkeypatch):
    """NVLink is read once a minute: the growth one reading showed still counts in the cycles until the next."""
    fake = install(monkeypatch, nvlink=fake_nvml.nvlink(2))
    monkeypatch.setattr(gpu_health, "NVLINK_REFRESH", 0)
    sample(clock)
    fake.gpus[0]["nvlink"][0]["errors"][0] = 20  # 20 replays in 10 s
    sample(clock)
    assert "NVLink errors rising: 120.0 per minute" in open_incident(r"gpu-degraded:nvlink").message
    monkeypatch.setattr(gpu_health, "NVLINK_REFRESH", 3600)  # the reading is kept from here on
    sample(clock, 8)
    assert open_incident(r"gpu-degraded:nvlink"), "the growth of the kept reading was forgotten"
    assert [f.signal for f in health_of(0).findings] == ["nvlink"]


def test_a_gpu_nvml_no_longer_answers_for_is_failing(clock, engine, monkeypatch):
    fake = install(monkeypatch)
    sample(clock)
    fake.gpus[0]["lost"] = True
    sample(clock, 2)
    assert open_incident(r"gpu-failing:nvml") is None and Engine.objects.get().enabled  # not for one hiccup
    sample(clock)  # the failing-NVML rule's 3 cycles
    incident = open_incident(r"gpu-failing:nvml")
    assert incident.level == Level.ORANGE and "NVML does not answer for this GPU (NVMLError_GpuIsLost" in \
        incident.message
    assert "Action: reset the GPU" in incident.message and not Engine.objects.get().enabled


def test_signals_not_supported_raise_nothing(clock, engine, monkeypatch):
    install(monkeypatch, ecc_uncorrected=None, ecc_corrected=None, remap=None, retired=None, clocks=None,
            pcie_width=None, replays=None, nvlink=None, xid=False)
    sample(clock, 8)
    assert not Incident.objects.filter(source__contains=":gpu-").exists()
    assert health_of(0).state == "ok" and health_of(0).signals["ECC uncorrected"] == "not supported"
    assert Engine.objects.get().enabled


def test_a_fixed_gpu_resolves_after_the_clear_duration_and_the_engine_stays_stopped(clock, engine, monkeypatch):
    fake = install(monkeypatch, ecc_uncorrected=1)
    sample(clock)
    assert open_incident(r"gpu-failing:ecc")
    fake.gpus[0]["ecc_uncorrected"] = 0  # the operator reset the GPU: volatile counters start again
    sample(clock, 6)
    assert open_incident(r"gpu-failing:ecc"), "resolved before the clear duration"
    sample(clock)
    assert open_incident(r"gpu-failing:ecc") is None
    assert not Engine.objects.get().enabled  # an operator starts it again


def test_the_switches(clock, engine, monkeypatch):
    rules = TelemetryRules.objects.get()
    rules.gpu_health_stop = False
    rules.save()
    install(monkeypatch, ecc_uncorrected=1)
    sample(clock)
    assert open_incident(r"gpu-failing:ecc") and Engine.objects.get().enabled
    rules.gpu_health_enabled = False
    rules.save()
    sample(clock)
    assert open_incident(r"gpu-failing:ecc") is None
    assert latest.load("local").gpu_health == ()


def xid(clock, fake, index, code):
    """An Xid as the driver reports it: caught by the listener thread the sampling task started."""
    wait_for(lambda: fake.waiting >= 1, 30, "the Xid listener waiting")
    fake.xid(index, code)
    wait_for(lambda: xid_listener.recent("local", 0), 30, "the Xid recorded")


@pytest.mark.parametrize(("code", "rule", "level", "meaning", "action"), [
    pytest.param(79, "gpu-failing", Level.ORANGE, "GPU has fallen off the bus", "reset the GPU", id="79"),
    pytest.param(48, "gpu-failing", Level.ORANGE, "double-bit (uncorrectable) ECC error", "reset the GPU",
                 id="48"),
    pytest.param(63, "gpu-failing", Level.ORANGE, "row remapping / page retirement recorded", "reset the GPU",
                 id="63"),
    pytest.param(64, "gpu-failing", Level.ORANGE, "row remapping / page retirement failed", "replace the GPU",
                 id="64"),
    pytest.param(95, "gpu-failing", Level.ORANGE, "uncontained ECC error", "reset the GPU", id="95"),
    pytest.param(94, "gpu-degraded", Level.YELLOW, "contained ECC error", "restart the engine", id="94"),
    pytest.param(31, "gpu-degraded", Level.YELLOW, "application fault", "restart the engine", id="31"),
])
def test_an_xid_raises_its_class_with_the_catalogue_action(clock, engine, monkeypatch, code, rule, level, meaning,
                                                           action):
    fake = install(monkeypatch)
    sample(clock)
    xid(clock, fake, 0, code)
    sample(clock)
    incident = open_incident(rf"{rule}:xid")
    assert (incident.level, incident.kind) == (level, Incident.Kind.GPU)
    assert f"Xid {code}: {meaning}" in incident.message and f"Action: {action}" in incident.message
    if rule == "gpu-failing":
        assert not Engine.objects.get().enabled
    else:  # the engine's own fault: restarted through the pool's normal path
        assert Engine.objects.get().enabled and Engine.objects.get().restart_generation == 1
        assert "engine glm restarted at" in incident.message
    assert queued_control_tasks(engine) == 1


def test_an_application_fault_xid_clears_after_its_hold(clock, engine, monkeypatch):
    rules = TelemetryRules.objects.get()
    rules.gpu_xid_hold_minutes = 1
    rules.save()
    fake = install(monkeypatch)
    sample(clock)
    xid(clock, fake, 0, 13)
    sample(clock)
    assert open_incident(r"gpu-degraded:xid")
    sample(clock, 6)  # the Xid is older than a minute from here on
    assert open_incident(r"gpu-degraded:xid"), "an Xid counts for its hold"
    sample(clock, 7)
    assert open_incident(r"gpu-degraded:xid") is None
    assert health_of(0).state == "ok"
