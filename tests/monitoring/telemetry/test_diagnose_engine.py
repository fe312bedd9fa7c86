"""`manage.py diagnose` against the real CPU engine (issue 19): the KV cache, preemptions, prompt lengths and
log lines are the engine's own; only the GPU memory lines come from the fake NVML (CI has no GPU)."""

from django.core.management import call_command

from inference.models import Engine
from tests.support import fake_nvml
from tests.support.chat import CONTEXT, engine  # noqa: F401 - the package's engine (conftest.py)

GIB = 2**30


def test_a_healthy_cpu_engine_is_ok_on_every_line(engine, monkeypatch, capsys):  # noqa: F811 - the fixture
    # The demo engine, as if it ran on GPU 0 holding 10 of 80 GiB (vLLM's default reservation is 90 %).
    Engine.objects.filter(pk=engine.pk).update(gpu_ids="0")
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, used=10 * GIB, total=80 * GIB,
                                                                     processes=[(engine.pid, 10 * GIB)])]))
    call_command("diagnose", engine.name)
    out = capsys.readouterr().out.splitlines()
    lines = {line.split("  ")[0].strip(): line for line in out[2:]}
    assert out[0] == "Memory diagnosis of engine chat (ready)"
    assert "10.0 GiB held, reserved 90 % = 72.0 GiB" in lines["GPU 0: engine memory vs reserved"]
    # The readiness probe was a real request: the engine's own histogram counted it.
    assert f"over {CONTEXT // 2} prompt tokens" in lines["long-context requests"]
    assert "0 since the engine started" in lines["preemptions"]
    assert "none in the last 4 MiB" in lines["out-of-memory in the log"]
    assert all("  ok  " in line for line in lines.values()), "\n".join(out)
