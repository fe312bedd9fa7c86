import pytest

from inference.models import Engine

ADD_URL = "/admin/inference/engine/add/"


def form(**overrides):
    data = {"name": "glm", "enabled": "on", "host": "local", "listen_address": "127.0.0.1", "port": "8001",
            "model": "/models/glm-4.7-flash", "served_model_name": "glm-4.7-flash", "gpu_ids": "0,1,2,3",
            "tensor_parallel_size": "4", "max_model_len": "4096", "kv_cache_dtype": "auto", "block_size": "",
            "max_num_seqs": "", "enable_chunked_prefill": "unknown", "gpu_memory_utilization": "0.85",
            "quantization": "", "shutdown_timeout": "30", "startup_timeout": "600", "extra_args": "[]", "env": "{}",
            "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def errors(response):
    return {field: " ".join(msgs) for field, msgs in response.context["adminform"].form.errors.items()}


@pytest.mark.django_db
def test_valid_engine_is_saved_with_its_command(admin_client):
    response = admin_client.post(ADD_URL, form(extra_args='["--seed", "1"]', env='{"VLLM_LOGGING_LEVEL": "DEBUG"}'))
    assert response.status_code == 302, errors(response)
    engine = Engine.objects.get()
    assert (engine.gpus, engine.tensor_parallel_size, engine.state) == ([0, 1, 2, 3], 4, "stopped")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"gpu_ids": "0,1,1,2"}, "gpu_ids", "A GPU is listed twice"),
        ({"gpu_ids": "0,1"}, "tensor_parallel_size", "does not match the 2 GPU(s)"),
        ({"gpu_ids": "zero"}, "gpu_ids", "comma-separated list of numbers"),
        ({"kv_cache_dtype": "fp4"}, "kv_cache_dtype", "Select a valid choice"),
        ({"port": "80"}, "port", "greater than or equal to 1024"),
        ({"gpu_memory_utilization": "1.5"}, "gpu_memory_utilization", "less than or equal to 1"),
        ({"extra_args": '"--seed 1"'}, "extra_args", "JSON list of strings"),
        ({"extra_args": '["--port", "9"]'}, "extra_args", "--port is set by its own field"),
        ({"extra_args": '["--seed", 1]'}, "extra_args", "JSON list of strings"),
        ({"env": '{"BAD NAME": "1"}'}, "env", "not a valid environment variable name"),
        ({"env": '{"N": 1}'}, "env", "must be a string"),
        ({"listen_address": "localhost"}, "listen_address", "valid IPv4 or IPv6"),
    ],
)
def test_bad_engine_settings_name_the_field(admin_client, overrides, field, text):
    response = admin_client.post(ADD_URL, form(**overrides))
    assert response.status_code == 200
    assert text in errors(response).get(field, ""), errors(response)
    assert not Engine.objects.exists()


@pytest.mark.django_db
def test_port_and_gpus_are_not_shared_on_one_host(admin_client):
    Engine.objects.create(name="first", port=8001, model="/m", served_model_name="m", gpu_ids="0,1",
                          tensor_parallel_size=2)
    response = admin_client.post(ADD_URL, form(gpu_ids="1,2", tensor_parallel_size="2"))
    found = errors(response)
    assert "already used by another engine on host local" in found["port"]
    assert "GPU(s) [1] already belong to another engine" in found["gpu_ids"]
    # Another host has its own ports and GPUs.
    response = admin_client.post(ADD_URL, form(host="gpu2", gpu_ids="1,2", tensor_parallel_size="2"))
    assert response.status_code == 302


@pytest.mark.django_db
def test_running_engine_cannot_be_deleted(admin_client):
    engine = Engine.objects.create(name="busy", port=8001, model="/m", served_model_name="m", state="ready")
    assert admin_client.post(f"/admin/inference/engine/{engine.pk}/delete/", {"post": "yes"}).status_code == 403
    Engine.objects.filter(pk=engine.pk).update(state="stopped")
    assert admin_client.post(f"/admin/inference/engine/{engine.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Engine.objects.exists()


@pytest.mark.django_db
def test_save_and_restart_applies_a_change_to_a_running_engine_now(admin_client):
    """Issue 15: the admin offers save-and-restart; a plain save leaves the engine running as it was started."""
    engine = Engine.objects.create(name="glm", port=8001, model="/m", served_model_name="m", state="ready",
                                   pid=None, running_config={})
    url = f"/admin/inference/engine/{engine.pk}/change/"
    assert 'name="_saveandrestart"' in admin_client.get(url).content.decode()
    data = form(name="glm", port="8001", model="/m", served_model_name="m", gpu_ids="", tensor_parallel_size="1",
                max_model_len="4096", gpu_memory_utilization="0.8")
    response = admin_client.post(url, data)
    assert response.status_code == 302, errors(response)
    engine.refresh_from_db()
    assert (engine.gpu_memory_utilization, engine.restart_generation) == (0.8, 0)  # saved, not restarted

    response = admin_client.post(url, {**data, "gpu_memory_utilization": "0.7", "_saveandrestart": "Save and restart"},
                                 follow=True)
    engine.refresh_from_db()
    assert (engine.gpu_memory_utilization, engine.restart_generation, engine.enabled) == (0.7, 1, True)
    shown = [str(m) for m in response.context["messages"]]
    assert "glm restarts now (drain, stop, start): its model is not served until it is ready again." in shown
