"""Extra arguments and environment are checked for what they do, not how they are spelled (issue 15).

The managed-flag check was exact-string: `--max_model_len` and `-tp` slipped past it and contradicted the
engine's own fields. These refusals hold for superusers too: they keep supervision working.
"""

import json

import pytest

from inference.models import Engine
from tests.inference.engines.test_admin import ADD_URL, errors, form


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "text"), [
    (["-tp", "2"], "-tp (that is --tensor-parallel-size) is set by its own field"),
    (["--max_model_len", "8192"], "--max-model-len is set by its own field"),
    (["--max-model", "8192"], "--max-model-len is set by its own field"),
    (["--port=9000"], "--port is set by its own field"),
    (["-qawq"], "-q (that is --quantization) is set by its own field"),
    (["--device-memory-utilization", "0.5"], "(that is --gpu-memory-utilization) is set by its own field"),
    (["--served_model_name", "other"], "--served-model-name is set by its own field"),
    (["--no-enforce-eager"], "--no-enforce-eager (that is --enforce-eager) is set by its own field"),
    (["--device-ids", "5"], "--device-ids is set by its own field (GPU ids)"),
    (["--seed", "1", "/models/other"], "'/models/other' is not a flag: vLLM would take it as the model"),
    (["--config", "/tmp/more.yaml"], "--config reads more arguments from a file"),
    (["--help"], "--help prints the help and exits"),
    (["--uds", "/tmp/engine.sock"], "--uds listens on a Unix socket"),
    (["--sed", "1"], "--sed is not an argument of vLLM 0.32.0's server"),
    (["--max", "1"], "ambiguous option: --max could match"),
    (["--seed"], "argument --seed: expected one argument"),
    (["--compilation-config.mode"], "--compilation-config.mode needs a value"),
])
def test_refused_arguments_whatever_the_spelling(admin_client, args, text):
    response = admin_client.post(ADD_URL, form(extra_args=json.dumps(args)))
    assert response.status_code == 200
    assert text in errors(response).get("extra_args", ""), errors(response)
    assert not Engine.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("env", "text"), [
    ({"LD_PRELOAD": "/tmp/evil.so"}, "LD_PRELOAD is refused: it loads libraries"),
    ({"PYTHONPATH": "/tmp"}, "PYTHONPATH is refused: it changes what Python imports"),
    ({"PYTHONWARNINGS": "ignore"}, "PYTHONWARNINGS is refused"),
    ({"BROWSER": "/tmp/evil"}, "BROWSER is refused"),
    ({"PERL5OPT": "-Mevil"}, "PERL5OPT is refused"),
    ({"PATH": "/tmp"}, "PATH is refused"),
    ({"https_proxy": "http://proxy:3128"}, "https_proxy is refused: it sends the engine's connections"),
    ({"VLLM_PLUGINS": "evil"}, "VLLM_PLUGINS is refused: it loads vLLM plugins"),
    ({"VLLM_LOGGING_CONFIG_PATH": "/tmp/l.json"}, "VLLM_LOGGING_CONFIG_PATH is refused"),
    ({"VLLM_NCCL_SO_PATH": "/tmp/evil.so"}, "VLLM_NCCL_SO_PATH is refused"),
    ({"NCCL_NET_PLUGIN": "evil"}, "NCCL_NET_PLUGIN is refused: it loads a plugin"),
    ({"VLLM_ALLOW_INSECURE_SERIALIZATION": "1"}, "VLLM_ALLOW_INSECURE_SERIALIZATION is refused"),
    ({"HF_ENDPOINT": "https://example.com"}, "HF_ENDPOINT is refused"),
    ({"CUDA_VISIBLE_DEVICES": "7"}, "CUDA_VISIBLE_DEVICES is refused: it is set from the GPU ids field"),
    ({"HF_HUB_OFFLINE": "0"}, "HF_HUB_OFFLINE must be 1"),
    ({"DATABASE_URL": "postgres://x"}, "DATABASE_URL is not an engine setting glmadmin passes on"),
])
def test_refused_environment_is_named(admin_client, env, text):
    response = admin_client.post(ADD_URL, form(env=json.dumps(env)))
    assert response.status_code == 200
    assert text in errors(response).get("env", ""), errors(response)
    assert not Engine.objects.exists()


@pytest.mark.django_db
def test_every_problem_is_named_at_once(admin_client):
    response = admin_client.post(ADD_URL, form(env='{"LD_PRELOAD": "x", "PYTHONPATH": "y", "NCCL_DEBUG": "INFO"}',
                                               extra_args='["-tp", "4", "--max_model_len", "1"]'))
    found = errors(response)
    assert "LD_PRELOAD" in found["env"] and "PYTHONPATH" in found["env"] and "NCCL_DEBUG" not in found["env"]
    assert "-tp" in found["extra_args"] and "--max-model-len" in found["extra_args"]


@pytest.mark.django_db
def test_allowed_environment_and_tuning_flags_are_saved(admin_client):
    env = {"VLLM_LOGGING_LEVEL": "DEBUG", "NCCL_DEBUG": "INFO", "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1",
           "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    args = ["--seed", "1", "-O3", "--max-num-batched-tokens", "8k", "--dtype=float32", "--compilation-config.mode", "0"]
    response = admin_client.post(ADD_URL, form(env=json.dumps(env), extra_args=json.dumps(args)))
    assert response.status_code == 302, errors(response)
    assert Engine.objects.get().env == env
