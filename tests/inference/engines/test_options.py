import json
from datetime import time

import pytest
from django_celery_beat.models import PeriodicTask

from inference import options, schedules
from inference.live import engine_summary
from inference.models import Engine


def make(**fields):
    defaults = {"name": "glm", "port": 8001, "model": "/models/glm", "served_model_name": "glm-4.7-flash"}
    return Engine(**{**defaults, **fields})


def test_command_is_an_argv_with_the_operator_options():
    engine = make(gpu_ids="0,1,2,3", tensor_parallel_size=4, max_model_len=4096, block_size=16, max_num_seqs=8,
                  kv_cache_dtype="fp8", enable_chunked_prefill=False, gpu_memory_utilization=0.85,
                  quantization="awq", enforce_eager=True, extra_args=["--seed", "1; rm -rf /"])
    argv = options.command(engine, "/opt/engine/bin/python")
    assert argv[:3] == ["/opt/engine/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--model"] == "/models/glm" and pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8001"
    for flag, value in [("--tensor-parallel-size", "4"), ("--block-size", "16"), ("--max-num-seqs", "8"),
                        ("--kv-cache-dtype", "fp8"), ("--gpu-memory-utilization", "0.85"), ("--quantization", "awq")]:
        assert argv[argv.index(flag) + 1] == value
    assert "--no-enable-chunked-prefill" in argv and "--enforce-eager" in argv
    # An extra argument stays one argument: nothing here goes through a shell.
    assert argv[-2:] == ["--seed", "1; rm -rf /"]


def test_defaults_leave_vllm_defaults_alone():
    argv = options.command(make(), "python")
    for flag in ("--tensor-parallel-size", "--block-size", "--kv-cache-dtype", "--quantization", "--enforce-eager"):
        assert flag not in argv
    assert argv[argv.index("--max-model-len") + 1] == "4096"


def test_environment_pins_gpus_and_stays_offline():
    env = options.environment(make(gpu_ids="2,3", tensor_parallel_size=2, env={"HF_HUB_OFFLINE": "0"}), {"A": "1"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["A"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert options.environment(make(), {})["HF_HUB_OFFLINE"] == "1"


def test_environment_drops_what_a_row_saved_before_the_checks_holds():
    engine = make(env={"LD_PRELOAD": "/tmp/evil.so", "PYTHONPATH": "/tmp", "CUDA_VISIBLE_DEVICES": "7",
                       "VLLM_LOGGING_LEVEL": "DEBUG"})
    env = options.environment(engine, {})
    assert "LD_PRELOAD" not in env and "PYTHONPATH" not in env and "CUDA_VISIBLE_DEVICES" not in env
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG"


def test_the_workers_library_path_reaches_the_engine_but_not_its_preloads():
    # NVIDIA's container images find the CUDA driver's libraries through LD_LIBRARY_PATH: the operator's
    # (the worker's) own passes on; LD_PRELOAD never does, and no engine row may set either.
    worker = {"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64", "LD_PRELOAD": "/tmp/evil.so", "DATABASE_URL": "x"}
    env = options.base_environment(worker)
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    assert "LD_PRELOAD" not in env and "DATABASE_URL" not in env


@pytest.mark.django_db
def test_daily_restart_follows_the_engine_setting():
    engine = make(daily_restart_at=time(3, 0))
    engine.save()
    task = PeriodicTask.objects.get(name="Daily restart of engine glm")
    assert (task.crontab.hour, task.crontab.minute, task.queue) == ("3", "0", "engines.local")
    assert json.loads(task.args) == [engine.pk] and task.expire_seconds < 24 * 3600
    engine.daily_restart_at = time(4, 30)
    engine.save()
    assert PeriodicTask.objects.get(name="Daily restart of engine glm").crontab.hour == "4"
    engine.daily_restart_at = None
    engine.save()
    assert not PeriodicTask.objects.filter(task="inference.tasks.scheduled_restart").exists()


@pytest.mark.django_db
def test_host_schedule_is_created_once_per_host():
    first = schedules.ensure_host_schedule("gpu2")
    assert schedules.ensure_host_schedule("gpu2").pk == first.pk
    assert (first.queue, first.interval.every, first.expire_seconds) == ("engines.gpu2", 5, 4)


@pytest.mark.django_db
def test_status_bar_summary():
    assert engine_summary() == {"state": "none", "label": "no engines"}
    make(name="a", state="ready").save()
    assert engine_summary() == {"state": "ready", "label": "1/1 ready"}
    make(name="b", port=8002, state="starting").save()
    assert engine_summary()["state"] == "loading"
    make(name="c", port=8003, state="failed", enabled=False).save()
    assert engine_summary() == {"state": "down", "label": "1/3 ready"}
