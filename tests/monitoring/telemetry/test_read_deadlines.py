"""Reads of the outside world in a sampling cycle have a deadline: a hung NVML or /proc walk does not hang it.

The hang is a call that waits on an Event the test holds (NVML is the one fake allowed; the real hung mount
is in tests/monitoring/disks/test_hung_mount.py).
"""

import threading

import pytest

from alerts.models import Incident
from glmadmin.lib import deadline
from monitoring.telemetry import gpu_health_cycle, process_table, sampler
from monitoring.telemetry.process_table import EngineProcess, ProcessTable
from tests.support import fake_nvml
from tests.support.processes import wait_for


@pytest.fixture
def gate():
    release = threading.Event()
    yield release
    release.set()  # no thread stays blocked after the test


class HungNvml(fake_nvml.FakeNvml):
    """A driver whose GPU count never comes back until released (a GPU fallen off the bus)."""

    def __init__(self, gpus, release: threading.Event):
        super().__init__(gpus)
        self.release = release

    def nvmlDeviceGetCount(self):
        self.release.wait(120)
        return super().nvmlDeviceGetCount()


@pytest.mark.django_db
def test_a_hung_nvml_read_is_a_status_within_its_deadline(monkeypatch, gate):
    monkeypatch.setattr(sampler, "NVML_SECONDS", 0.5)
    fake_nvml.install(monkeypatch, HungNvml([fake_nvml.gpu(0)], gate))
    gpus, status = sampler.read_gpus(ProcessTable([]))
    assert (gpus, status) == ((), "NVML read did not return in 0.5 s")  # what the failing-NVML rule reports
    assert sampler.read_gpu_health("here", (), status) == ()  # not asked while NVML hangs
    assert sampler.read_gpus(ProcessTable([]))[1] == status  # asked again: joins the hung read, no second one

    gate.set()
    wait_for(lambda: sampler.NVML_KEY not in deadline.hung(), 30, "the NVML read to return")
    monkeypatch.setattr(sampler, "NVML_SECONDS", 30.0)  # nothing hangs any more: a generous deadline
    gpus, status = sampler.read_gpus(ProcessTable([]))
    assert status == "" and [g.index for g in gpus] == [0]


@pytest.mark.django_db
def test_a_hung_process_table_walk_is_a_check_stalled_incident(monkeypatch, gate):
    monkeypatch.setattr(process_table, "WALK_SECONDS", 0.5)
    real_iter = process_table.psutil.process_iter

    def hung_iter(*args, **kwargs):
        gate.wait(120)
        return real_iter(*args, **kwargs)

    monkeypatch.setattr(process_table.psutil, "process_iter", hung_iter)
    with pytest.raises(deadline.Stalled):
        ProcessTable([EngineProcess(1, 1, None)]).name(1)
    incident = Incident.objects.open().get(kind=Incident.Kind.CHECK)
    assert incident.message == "reading the process table (/proc) did not return in 0.5 s"
    assert incident.level == "orange" and incident.source.startswith("check:process-table:")

    gate.set()
    wait_for(lambda: not any(k.startswith("process-table:") for k in deadline.hung()), 30, "the walk to return")
    monkeypatch.setattr(process_table, "WALK_SECONDS", 30.0)  # nothing hangs any more: a generous deadline
    assert 1 in ProcessTable([]).entries  # init is always there
    incident.refresh_from_db()
    assert incident.resolved_at is not None


class HungHealthNvml(fake_nvml.FakeNvml):
    """A driver that answers the main read, then hangs on the health read's remapped rows (a GPU falling off
    the bus between the two)."""

    def __init__(self, gpus, release: threading.Event):
        super().__init__(gpus)
        self.release = release

    def nvmlDeviceGetRemappedRows(self, handle):
        self.release.wait(120)
        return super().nvmlDeviceGetRemappedRows(handle)


@pytest.mark.django_db
def test_a_hung_gpu_health_read_is_a_check_stalled_incident(monkeypatch, gate):
    monkeypatch.setattr(gpu_health_cycle, "HEALTH_SECONDS", 0.5)
    fake_nvml.install(monkeypatch, HungHealthNvml([fake_nvml.gpu(0)], gate))
    gpus, status = sampler.read_gpus(ProcessTable([]))
    assert status == "" and [g.index for g in gpus] == [0]
    assert sampler.read_gpu_health("here", gpus, status) == ()  # the cycle goes on without health
    incident = Incident.objects.open().get(kind=Incident.Kind.CHECK)
    assert incident.message == "reading GPU health (NVML) did not return in 0.5 s"
    assert incident.source.startswith("check:gpu-health:")
    # The next cycle's main read is not handed the hung health call (a different key), and health is not
    # asked again while it hangs.
    gpus, status = sampler.read_gpus(ProcessTable([]))
    assert status == "" and [g.index for g in gpus] == [0]
    assert sampler.read_gpu_health("here", gpus, status) == ()

    gate.set()
    wait_for(lambda: not any(k.startswith("gpu-health:") for k in deadline.hung()), 30, "the health read to return")
    monkeypatch.setattr(gpu_health_cycle, "HEALTH_SECONDS", 30.0)  # nothing hangs any more: a generous deadline
    assert [h.index for h in sampler.read_gpu_health("here", gpus, status)] == [0]
    incident.refresh_from_db()
    assert incident.resolved_at is not None
