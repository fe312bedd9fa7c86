"""`manage.py diagnose [ENGINE]` (issue 19): each memory check with its verdict. GPU memory from the fake NVML,
the engine's /metrics from a real HTTP server, its log a real file, its processes a real process tree."""

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from inference import supervisor
from inference.models import Engine, EngineState
from tests.support import fake_nvml
from tests.support.telemetry import MetricsServer, ProcessTree, invisible_pid

pytestmark = pytest.mark.django_db
GIB = 2**30


def metrics(kv: float, preemptions: int, prompts: dict[str, int]) -> str:
    lines = ["# TYPE vllm:kv_cache_usage_perc gauge", f'vllm:kv_cache_usage_perc{{engine="0",model_name="glm"}} {kv}',
             "# TYPE vllm:num_preemptions counter",
             f'vllm:num_preemptions_total{{engine="0",model_name="glm"}} {preemptions}',
             "# TYPE vllm:request_prompt_tokens histogram"]
    lines += [f'vllm:request_prompt_tokens_bucket{{engine="0",le="{le}",model_name="glm"}} {n}'
              for le, n in prompts.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def scene(monkeypatch):
    tree, server = ProcessTree(), MetricsServer()
    engine = Engine.objects.create(name="glm", port=server.port, model="/m", served_model_name="glm", gpu_ids="0,1",
                                   tensor_parallel_size=2, gpu_memory_utilization=0.5, max_model_len=8192,
                                   state=EngineState.READY, pid=tree.leader.pid, process_started_at=tree.create_time)
    fake = fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([
        fake_nvml.gpu(0, used=30 * GIB, total=80 * GIB, processes=[(tree.child, 30 * GIB)]),
        fake_nvml.gpu(1, used=38 * GIB, total=80 * GIB, processes=[(tree.grandchild, 30 * GIB)]),
    ]))
    yield engine, fake, server, tree
    server.close()
    tree.kill()


def run(capsys, *names) -> dict[str, str]:
    call_command("diagnose", *names)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Memory diagnosis of engine glm")
    return {line.split("  ")[0].strip(): line for line in out[2:]}


def test_a_healthy_engine_is_ok_line_by_line(scene, capsys):
    engine, fake, server, tree = scene
    fake.gpus[1]["used"] = 30 * GIB
    server.text = metrics(0.31, 0, {"1024.0": 40, "4096.0": 50, "+Inf": 50})
    lines = run(capsys, "glm")
    assert all("  ok  " in line for line in lines.values()), lines
    assert "30.0 GiB held, reserved 50 % = 40.0 GiB" in lines["GPU 0: engine memory vs reserved"]
    assert "0 % of 50 request(s) over 4096 prompt tokens" in lines["long-context requests"]


def test_each_problem_gets_its_action(scene, capsys):
    engine, fake, server, tree = scene
    stray = invisible_pid()
    fake.gpus[0]["processes"] = [(tree.child, 45 * GIB)]  # past its 40 GiB reservation + 2 %
    fake.gpus[0]["used"] = 45 * GIB
    fake.gpus[1]["processes"].append((stray, 8 * GIB))
    fake.gpus[1]["used"] = 60 * GIB
    server.text = metrics(0.97, 12, {"1024.0": 2, "4096.0": 4, "8192.0": 10, "+Inf": 10})
    supervisor.log_file(engine).parent.mkdir(parents=True, exist_ok=True)
    supervisor.log_file(engine).write_text("INFO started\ntorch.OutOfMemoryError: CUDA out of memory. Tried to "
                                           "allocate 2.00 GiB\nINFO still here\n")
    lines = run(capsys, "glm")
    assert "act" in lines["GPU 0: engine memory vs reserved"] and "restart it" in \
        lines["GPU 0: engine memory vs reserved"]
    foreign = next(line for check, line in lines.items() if check == "GPU 1: other processes")
    assert f"pid {stray} (?, foreign) holds 8.0 GiB" in foreign and f"stop pid {stray}" in foreign
    assert "spread 19 points" in lines["tensor-parallel balance"] and "act" in lines["tensor-parallel balance"]
    assert "look here" in lines["KV cache usage"] and "97 %" in lines["KV cache usage"]
    assert "12 since the engine started" in lines["preemptions"] and "lower max_num_seqs" in lines["preemptions"]
    assert "60 % of 10 request(s) over 4096 prompt tokens" in lines["long-context requests"]
    assert "CUDA out of memory" in lines["out-of-memory in the log"] and "act" in lines["out-of-memory in the log"]


def test_an_unknown_engine_is_one_readable_line(scene):
    with pytest.raises(CommandError, match="^unknown engine 'nope' \\(engines: glm\\)$"):
        call_command("diagnose", "nope")


def test_the_engine_panels_button_shows_the_same_lines_to_staff_only(scene, admin_client, django_user_model):
    engine, fake, server, tree = scene
    server.text = metrics(0.31, 5, {"4096.0": 1, "+Inf": 1})
    dashboard = admin_client.get("/").content.decode()
    assert f'href="/diagnose/{engine.pk}/" data-engine-diagnose' in dashboard
    page = admin_client.get(f"/diagnose/{engine.pk}/").content.decode()
    preemptions = page[page.index('data-check="preemptions"'):].split("</tr>")[0]
    assert "5 since the engine started" in preemptions and "lower max_num_seqs" in preemptions
    assert 'data-check="GPU 1: engine memory vs reserved"' in page
    user = django_user_model.objects.create_user("viewer", password="pw")
    client = Client()
    client.force_login(user)
    assert client.get(f"/diagnose/{engine.pk}/").status_code == 403  # staff with engine rights only
    assert Client().get(f"/diagnose/{engine.pk}/").status_code == 302  # to the login page
