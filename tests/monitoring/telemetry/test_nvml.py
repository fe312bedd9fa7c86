"""GPU readings through the NVML wrapper (a fake pynvml: CI has no GPU) and whose each GPU process is."""

import os

import psutil
import pytest

from glmadmin.lib import nvml
from inference.models import Engine
from monitoring.telemetry import sampler
from monitoring.telemetry.process_table import EngineProcess, ProcessTable
from tests.support import fake_nvml
from tests.support.telemetry import ProcessTree, invisible_pid


@pytest.fixture
def tree():
    tree = ProcessTree()
    yield tree
    tree.kill()


def test_readings_in_plain_units(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([
        fake_nvml.gpu(0, used=3 * 2**30, total=80 * 2**30, util=41, temp=63, power_mw=250_500, limit_mw=700_000),
        fake_nvml.gpu(1, util=0, limit_mw=None),
    ]))
    snapshot = nvml.read()
    assert snapshot.status == ""
    first, second = snapshot.gpus
    assert (first.index, first.uuid, first.name) == (0, "GPU-fake-0", "NVIDIA H100 80GB HBM3")
    assert (first.memory_used, first.memory_total) == (3 * 2**30, 80 * 2**30)
    assert (first.utilization, first.temperature, first.power_draw, first.power_limit) == (41, 63, 250.5, 700)
    assert second.power_limit is None  # not supported on this card: unknown, not 0
    assert fake.init_count == 1


def test_nvml_is_initialised_once_per_process(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0)]))
    for _ in range(5):
        nvml.read()
    assert fake.init_count == 1 and nvml.init_calls == 1
    # A forked child (a Celery prefork worker) cannot use its parent's handle: it initialises again, once.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how often NVML was initialised in its copy of the fake
        try:
            nvml.read()
            nvml.read()
            os.write(write_end, str(fake.init_count).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 10) == b"2"
    assert fake.init_count == 1  # the parent's own handle is untouched


@pytest.mark.parametrize("error", [fake_nvml.NVMLError_LibraryNotFound, fake_nvml.NVMLError_DriverNotLoaded])
def test_no_gpu_is_a_status_not_an_error(monkeypatch, error):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=error()))
    assert nvml.read() == nvml.Snapshot((), nvml.NO_GPU)
    assert nvml.read().status == "no GPU"
    assert fake.init_count == 1  # the machine will not grow a driver: not retried every cycle


def test_an_nvml_failure_is_an_error_with_the_reason(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0)]))
    fake.failing["nvmlDeviceGetMemoryInfo"] = fake_nvml.NVMLError_GpuIsLost("GPU is lost")
    with pytest.raises(nvml.NvmlError, match="GPU is lost"):
        nvml.read()


def test_processes_belong_to_their_engine_or_are_foreign(monkeypatch, db, tree):
    engine = Engine.objects.create(name="big", port=8160, model="/m", served_model_name="big", pid=tree.leader.pid,
                                   process_started_at=tree.create_time)
    hidden = invisible_pid()
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, processes=[
        (tree.child, 2**30), (tree.grandchild, 30 * 2**30), (os.getpid(), 2**20), (hidden, None)])]))
    table = ProcessTable([EngineProcess(engine.pk, engine.pid, engine.process_started_at)])
    gpus, status = sampler.read_gpus(table)
    assert status == ""
    owners = {p.pid: (p.engine_id, p.name, p.used_bytes) for p in gpus[0].processes}
    assert owners[tree.child][0] == engine.pk  # in the engine's process group
    assert owners[tree.grandchild][0] == engine.pk  # left the group, still a descendant (like EngineCore)
    assert owners[os.getpid()][0] is None  # foreign: not the engine's
    assert owners[hidden] == (None, "?", None)  # another pid namespace: foreign, name unknown, no crash
    assert owners[tree.child][1].startswith("python")


def test_a_reused_pid_is_not_the_engine(monkeypatch, db, tree):
    table = ProcessTable([EngineProcess(1, tree.leader.pid, tree.create_time - 1000)])
    assert table.engine_of(tree.child) is None
    assert table.group_rss(tree.leader.pid) is None


def test_engine_memory_is_its_whole_tree(db, tree):
    table = ProcessTable([EngineProcess(1, tree.leader.pid, tree.create_time)])
    leader = psutil.Process(tree.leader.pid).memory_info().rss
    total = table.group_rss(tree.leader.pid)
    assert total > 2 * leader  # the leader and its two children, all Python interpreters
    assert set(table.members(tree.leader.pid)) == {tree.leader.pid, tree.child, tree.grandchild}
