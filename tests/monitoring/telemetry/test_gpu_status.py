"""manage.py gpu_status: a one-shot table of what NVML sees."""

import os

import pytest
from django.core.management import CommandError, call_command

from inference.models import Engine
from tests.support import fake_nvml
from tests.support.processes import manage
from tests.support.telemetry import ProcessTree, invisible_pid

pytestmark = pytest.mark.django_db


def test_gpus_and_processes_with_their_engine(monkeypatch, capsys):
    tree = ProcessTree()
    try:
        Engine.objects.create(name="llama-70b", port=8161, model="/m", served_model_name="m", pid=tree.leader.pid,
                              process_started_at=tree.create_time)
        hidden = invisible_pid()
        fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([
            fake_nvml.gpu(0, processes=[(tree.grandchild, 30 * 2**30)]),
            fake_nvml.gpu(1, util=5, processes=[(os.getpid(), 2**30), (hidden, None)])]))
        call_command("gpu_status")
    finally:
        tree.kill()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "NVIDIA driver 550.54.15, 2 GPU(s)"
    process_header = next(i for i, line in enumerate(out) if line.split()[:2] == ["GPU", "pid"])
    gpu_rows = [line.split() for line in out[3:process_header - 1]]
    assert [row[:3] for row in gpu_rows] == [["0", "NVIDIA", "H100"], ["1", "NVIDIA", "H100"]]
    assert "37%" in gpu_rows[0] and "5%" in gpu_rows[1]
    health_header = out.index("", process_header)  # the GPUs' health follows (test_gpu_health_shown.py)
    procs = {int(line.split()[1]): line for line in out[process_header + 1:health_header]}
    assert len(procs) == 3
    assert procs[tree.grandchild].endswith("llama-70b") and "30.0 GB" in procs[tree.grandchild]
    assert procs[os.getpid()].endswith("foreign")
    assert procs[hidden].split()[2] == "?" and procs[hidden].endswith("foreign")


def test_an_nvml_error_is_one_readable_line(monkeypatch):
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0)]))
    fake.failing["nvmlDeviceGetCount"] = fake_nvml.NVMLError_GpuIsLost("GPU is lost")
    with pytest.raises(CommandError, match="^NVML error: GPU is lost$"):
        call_command("gpu_status")


def test_a_machine_without_gpu_says_so_and_succeeds():
    """The real pynvml on this CI machine, which has no NVIDIA driver."""
    result = manage("gpu_status", check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "no GPU"), result.stderr
