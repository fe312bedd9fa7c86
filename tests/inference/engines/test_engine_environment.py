"""An engine starts from a scrubbed environment: none of the worker's secrets (issue 15).

The supervisor used to hand an engine the worker's whole environment (DATABASE_URL, the SMTP password, the
secret key): any code in an engine owned glmadmin. Here the real supervisor starts a stand-in engine (a script
in place of the engine runtime's Python) and the test reads what the started process got from
/proc/PID/environ; test_pool.py reads the same of a real vLLM engine.
"""

import os
import subprocess
import sys

import pytest

from glmadmin.lib import processes
from inference import supervisor
from inference.models import Engine
from inference.models import EngineState as S
from tests.support.processes import ROOT, free_port

SECRETS = {"DATABASE_URL": "postgres://glmadmin:db-secret@db/glmadmin", "REDIS_URL": "redis://:redis-secret@r/0",
           "GLMADMIN_SECRET_KEY": "key-secret", "GLMADMIN_SMTP_PASSWORD": "smtp-secret",
           "AWS_SECRET_ACCESS_KEY": "aws-secret", "PYTHONPATH": "/tmp/evil", "HF_TOKEN": "hf-secret",
           "VLLM_API_KEY": "api-secret"}


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        items = [item.decode().split("=", 1) for item in fh.read().split(b"\0") if item]
    return dict(items)


def assert_no_secrets(env: dict[str, str]) -> None:
    assert not set(SECRETS) & set(env), set(SECRETS) & set(env)
    leaked = [name for name, value in env.items() for secret in SECRETS.values() if secret in value]
    assert not leaked, leaked


@pytest.fixture
def fake_runtime(tmp_path, settings):
    """An engine runtime whose "python" just waits: the process the supervisor starts, with the environment
    it was given."""
    python = tmp_path / "engine-venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\nexec sleep 600\n")
    python.chmod(0o755)
    settings.ENGINE_PYTHON = str(python)
    return python


@pytest.fixture
def started(transactional_db, fake_runtime, monkeypatch):
    for name, value in {**SECRETS, "VLLM_LOGGING_LEVEL": "DEBUG", "HF_HOME": "/srv/hf", "LANG": "C.UTF-8",
                        "NCCL_DEBUG": "INFO", "CUDA_VISIBLE_DEVICES": "0,1"}.items():
        monkeypatch.setenv(name, value)  # the worker's environment
    engine = Engine.objects.create(name="env", port=free_port(), model="/m", served_model_name="m",
                                   gpu_ids="3", env={"OMP_NUM_THREADS": "2"})
    supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    assert engine.state == S.STARTING, engine.state_reason
    yield engine
    processes.kill_group(engine.pid)


def test_engine_gets_what_it_needs_and_no_secrets(started, fake_runtime):
    env = environ(started.pid)
    assert_no_secrets(env)
    assert env["PATH"].split(":")[0] == str(fake_runtime.parent)  # the engine runtime's programs first
    assert env["HOME"] and env["LANG"] == "C.UTF-8"
    # The worker's settings for vLLM and the libraries under it reach engines; the engine's own are added.
    assert (env["VLLM_LOGGING_LEVEL"], env["HF_HOME"], env["NCCL_DEBUG"]) == ("DEBUG", "/srv/hf", "INFO")
    assert (env["OMP_NUM_THREADS"], env["HF_HUB_OFFLINE"], env["VLLM_CPU_KVCACHE_SPACE"]) == ("2", "1", "1")
    assert env["CUDA_VISIBLE_DEVICES"] == "3"  # its GPU ids, not the worker's


def test_passthrough_adds_names_but_never_secrets(transactional_db, fake_runtime, settings, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/opt/engine-site")
    settings.ENGINE_ENV_PASSTHROUGH = ["PYTHONPATH"]
    engine = Engine.objects.create(name="pp", port=free_port(), model="/m", served_model_name="m")
    supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    try:
        assert environ(engine.pid)["PYTHONPATH"] == "/opt/engine-site"
    finally:
        processes.kill_group(engine.pid)


def test_settings_refuse_to_pass_secrets():
    env = {**os.environ, "GLMADMIN_ENGINE_ENV_PASSTHROUGH": "PYTHONPATH,DATABASE_URL,GLMADMIN_SMTP_PASSWORD"}
    loaded = subprocess.run([sys.executable, "-c", "import glmadmin.settings"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert loaded.returncode != 0
    assert ("ImproperlyConfigured: GLMADMIN_ENGINE_ENV_PASSTHROUGH must not pass glmadmin's secrets to engines: "
            "DATABASE_URL, GLMADMIN_SMTP_PASSWORD") in loaded.stderr
