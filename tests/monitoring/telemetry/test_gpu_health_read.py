"""GPU health signals read through NVML (a fake pynvml: CI has no GPU): values in plain units, what a GPU
does not support is None ("not supported"), never 0 and never an error, and the Xid event wait idles."""

import threading

import pytest

from monitoring.telemetry import gpu_health, gpu_verdict
from tests.support import fake_nvml
from tests.support.processes import wait_for


@pytest.fixture(autouse=True)
def _fresh_links(monkeypatch):
    monkeypatch.setattr(gpu_health, "_nvlink", {})  # the NVLink reading is kept for a minute per process


def test_every_signal_in_plain_units(monkeypatch):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(
        0, ecc_uncorrected=2, ecc_corrected=17, remap=[3, 1, 1, 0], retired=[[0x1000] * 4, [0x2000]],
        retired_pending=0, clocks=0x8 | 0x40 | 0x1, pcie_width=8, pcie_gen=4, replays=12,
        nvlink={**fake_nvml.nvlink(2, replay=5, crc_flit=7), 2: {"active": False, "errors": {0: 99}}})]))
    (health,) = gpu_health.read_all()
    assert health.answering and health.error == ""
    assert (health.ecc_uncorrected, health.ecc_corrected) == (2, 17)
    assert (health.remapped_rows, health.remap_pending, health.remap_failed) == (4, True, False)
    assert (health.retired_pages, health.retired_pending) == (5, False)
    assert health.clock_reasons == ["hw slowdown", "hw thermal slowdown"]  # idle (0x1) is no slowdown
    assert (health.pcie_width, health.pcie_width_max, health.pcie_gen, health.pcie_gen_max) == (8, 16, 4, 5)
    assert health.pcie_replays == 12
    # The inactive link's counters are not added: a link that is down is not carrying errors. CRC counters are
    # not read (they grow on healthy H200s, and each costs ~1 ms per link there).
    assert (health.nvlink_links, health.nvlink_errors) == (2, {"replay": 10, "recovery": 0})


def test_nvlink_is_read_once_per_refresh_interval(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, nvlink=fake_nvml.nvlink(2))]))
    (first,) = gpu_health.read_all()
    fake.gpus[0]["nvlink"][0]["errors"][0] = 7
    again = gpu_health.read_gpu(0)
    assert again.nvlink_errors == first.nvlink_errors == {"replay": 0, "recovery": 0}  # the kept reading
    assert again.nvlink_read_at == first.nvlink_read_at
    monkeypatch.setattr(gpu_health, "NVLINK_REFRESH", 0)
    assert gpu_health.read_gpu(0).nvlink_errors == {"replay": 7, "recovery": 0}


def test_what_a_gpu_does_not_support_is_none_and_shown_as_not_supported(monkeypatch):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(
        0, name="NVIDIA GeForce RTX 4090 D", ecc_uncorrected=None, ecc_corrected=None, remap=None, retired=None,
        clocks=None, replays=None, nvlink=None, pcie_gen_max=None)]))
    (health,) = gpu_health.read_all()
    assert health.answering  # not supported is no error
    assert health.ecc_uncorrected is None and health.remap_pending is None and health.retired_pages is None
    assert health.clock_events is None and health.pcie_replays is None and health.nvlink_links is None
    shown = gpu_verdict.signals(health)
    assert shown["ECC uncorrected"] == "not supported" and shown["NVLink"] == "not supported"
    assert shown["PCIe replays"] == "not supported" and shown["PCIe"] == "x16/x16 gen 5/not supported"
    state, findings = gpu_verdict.assess(health, [], gpu_verdict.Rates(), gpu_verdict.Limits(), utilization=100)
    assert (state, findings) == ("ok", [])


def test_a_gpu_that_does_not_answer_is_a_reading_not_an_exception(monkeypatch):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0), fake_nvml.gpu(1, lost=True)]))
    first, second = gpu_health.read_all()
    assert first.answering and not second.answering
    assert second.error == "NVMLError_GpuIsLost: GPU is lost"
    state, findings = gpu_verdict.assess(second, [], gpu_verdict.Rates(), gpu_verdict.Limits())
    assert state == "failing" and findings[0].action.startswith("reset the GPU")


def test_an_odd_error_of_one_query_costs_that_signal_only(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, replays=4)]))
    fake.failing["nvmlDeviceGetPcieReplayCounter"] = fake_nvml.NVMLError("Insufficient Size")
    (health,) = gpu_health.read_all()
    assert health.answering and health.pcie_replays is None and health.ecc_uncorrected == 0
    fake.failing["nvmlDeviceGetPcieReplayCounter"] = fake_nvml.NVMLError_GpuIsLost("GPU is lost")
    (health,) = gpu_health.read_all()
    assert not health.answering  # but a GPU that is gone is gone


def test_no_gpu_reads_nothing(monkeypatch):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded()))
    assert gpu_health.read_all() == ()


def test_the_xid_wait_blocks_until_an_event_or_its_timeout(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0), fake_nvml.gpu(1),
                                                              fake_nvml.gpu(2, xid=False)]))
    gpu_health.read_all()  # initialises NVML
    watcher = gpu_health.XidWatcher()
    assert (watcher.registered, watcher.unsupported) == ([0, 1], [2])
    assert watcher.wait(timeout_ms=10) is None  # nothing happened: a timeout, not an error
    events, stop = [], threading.Event()
    listener = threading.Thread(target=gpu_health.listen, args=(events.append, stop, 60_000))
    listener.start()
    try:
        # Blocked inside the driver's wait (60 s timeout), not polling.
        wait_for(lambda: fake.waiting == 1, 30, "the listener waiting for events")
        fake.xid(1, 79)
        wait_for(lambda: events, 30, "the Xid handed to the sink")
        assert [(e.index, e.code) for e in events] == [(1, 79)]
    finally:
        stop.set()
        fake.xid(0, 13)  # wakes the wait, so the loop sees stop
        listener.join(30)
    assert not listener.is_alive()
